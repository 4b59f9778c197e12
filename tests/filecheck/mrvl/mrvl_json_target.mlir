// RUN: mrvl-opt %s -t mrvl-json | filecheck %s
// RUN: not mrvl-opt %s -p graph-remove-identity -t 'mrvl-json{colour=red}' 2>&1 | filecheck %s --check-prefix=BADOPT

// The JSON pair printed to the output stream (no out-dir): each document after a separator.

func.func @main(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %0 = func.call @tvmgen_mrvl_main_0(%x) : (tensor<1x4xf32>) -> tensor<1x2xf32>
  func.return %0 : tensor<1x2xf32>
}
func.func @tvmgen_mrvl_main_0(%x: tensor<1x4xf32>) -> tensor<1x2xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<2x4xf32>
  %b = graph.constant dense<1.000000e+00> : tensor<2xf32>
  %0 = mrvl.fc %x, %w, %b {layer_name = "tvmgen_mrvl_main_0", activation = "relu"} : (tensor<1x4xf32>, tensor<2x4xf32>, tensor<2xf32>) -> tensor<1x2xf32>
  func.return %0 : tensor<1x2xf32>
}

// CHECK:      // ----- tvmgen_mrvl_main_0-nodes.json
// CHECK:        "batch_size": "1",
// CHECK:        "heads": [
// CHECK-NEXT:     [
// CHECK-NEXT:       1,
// CHECK:            "activation_type": [
// CHECK-NEXT:         "relu"
// CHECK:            "bias_const_name": [
// CHECK-NEXT:         "tvmgen_mrvl_main_0_const_1"
// CHECK:            "layer_name": [
// CHECK-NEXT:         "FC"
// CHECK:          "name": "tvmgen_mrvl_main_0",
// CHECK-NEXT:     "op": "tvm_op"
// CHECK:        "symbol": "tvmgen_mrvl_main_0"
// CHECK:      // ----- tvmgen_mrvl_main_0-consts.json
// CHECK-NEXT: {
// CHECK-NEXT:  "tvmgen_mrvl_main_0_const_0": {"data_base64": "AAAAPwAAAD8AAAA/AAAAPwAAAD8AAAA/AAAAPwAAAD8=", "dtype": "float32", "max": "0.5", "min": "0.5", "shape": [2, 4]},
// CHECK-NEXT:  "tvmgen_mrvl_main_0_const_1": {"data_base64": "AACAPwAAgD8=", "dtype": "float32", "max": "1", "min": "1", "shape": [1, 2]}
// CHECK-NEXT: }

// BADOPT: mrvl-opt: error: mrvl-json: invalid option: Provided arguments ["colour"] not found
