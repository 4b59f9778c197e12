// RUN: mrvl-opt %s -p convert-graph-to-mrvl,mrvl-partition,mrvl-quantize --split-input-file | filecheck %s
// RUN: mrvl-opt %s -p 'convert-graph-to-mrvl,mrvl-partition,mrvl-quantize{mode=int8}' --split-input-file | filecheck %s --check-prefix=INT8

// The fp16 precision policy of transformer sub-graphs (lowering/mrvl_precision.py): the
// residual Add and the FC feeding it write fp32 (mrvl.out_dtype = "f32"); the LayerNorm
// read only by the FC (a matrix engine input) and the sub-graph output stay fp16. int8
// builds and sub-graphs without a LayerNorm are not annotated.

func.func @main(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %g = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %ln = graph.onnx %x, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %w = graph.constant dense<2.500000e-01> : tensor<8x8xf32>
  %bias = graph.constant dense<1.000000e-01> : tensor<8xf32>
  %mm = graph.matmul %ln, %w {onnx_node = "fc/MatMul"} : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %y = graph.add %mm, %bias {onnx_node = "fc/Add"} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %r = graph.add %x, %y {onnx_node = "residual"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %g2 = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b2 = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %out = graph.onnx %r, %g2, %b2 {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln2"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  func.return %out : tensor<1x4x8xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK:       mrvl.layernorm %{{.+}} {onnx_nodes = ["ln"], layer_name
// CHECK:       mrvl.fc %{{.+}} {onnx_nodes = ["fc/MatMul", "fc/Add"], mrvl.out_dtype = "f32", layer_name
// CHECK:       mrvl.sum %{{.+}} {onnx_nodes = ["residual"], mrvl.out_dtype = "f32", layer_name
// CHECK:       mrvl.layernorm %{{.+}} {onnx_nodes = ["ln2"], layer_name
// INT8-LABEL:  func.func @tvmgen_mrvl_main_0
// INT8-NOT:    mrvl.out_dtype

// -----

// Not lowered: no LayerNorm, no policy (CNN sub-graphs are unchanged).

func.func @main(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %w = graph.constant dense<2.500000e-01> : tensor<8x8xf32>
  %mm = graph.matmul %x, %w {onnx_node = "fc/MatMul"} : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %r = graph.add %x, %mm {onnx_node = "residual"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %s = graph.add %r, %x {onnx_node = "again"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  func.return %s : tensor<1x4x8xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK-NOT:   mrvl.out_dtype
// CHECK:       func.return
