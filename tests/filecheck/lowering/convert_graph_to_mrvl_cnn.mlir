// RUN: mrvl-opt %s -p convert-graph-to-mrvl --split-input-file | filecheck %s

// A standalone batch_norm + relu -> one depthwise 1x1 mrvl.conv2d (groups = C) with the relu.

func.func @affine(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x2xf32> {
  %s = graph.constant dense<2.000000e+00> : tensor<2xf32>
  %b = graph.constant dense<1.000000e+00> : tensor<2xf32>
  %m = graph.constant dense<0.000000e+00> : tensor<2xf32>
  %v = graph.constant dense<1.000000e+00> : tensor<2xf32>
  %n = graph.batch_norm %x, %s, %b, %m, %v {epsilon = 0.000000e+00 : f32, layout = "NHWC", onnx_node = "bn"} : (tensor<1x4x4x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x4x4x2xf32>
  %r = graph.relu %n {onnx_node = "relu"} : (tensor<1x4x4x2xf32>) -> tensor<1x4x4x2xf32>
  func.return %r : tensor<1x4x4x2xf32>
}

// CHECK-LABEL: func.func @affine
// CHECK:       mrvl.conv2d {{.*}}onnx_nodes = ["bn", "relu"]{{.*}}groups = 2 : i64, activation = "relu"} : (tensor<1x4x4x2xf32>, tensor<2x1x1x1xf32>, tensor<2xf32>) -> tensor<1x4x4x2xf32>
// CHECK-NOT:   graph.batch_norm

// -----

// split on the channel axis -> two mrvl.slice; concat on the H axis -> mrvl.concat.

func.func @split_concat(%x: tensor<1x4x4x6xf32>) -> tensor<1x8x4x3xf32> {
  %a, %b = graph.split %x {axis = 3 : i64, split = array<i64: 3, 3>} : (tensor<1x4x4x6xf32>) -> (tensor<1x4x4x3xf32>, tensor<1x4x4x3xf32>)
  %c = graph.concat %a, %b {axis = 1 : i64} : (tensor<1x4x4x3xf32>, tensor<1x4x4x3xf32>) -> tensor<1x8x4x3xf32>
  func.return %c : tensor<1x8x4x3xf32>
}

// CHECK-LABEL: func.func @split_concat
// CHECK:       %[[A:.+]] = mrvl.slice %{{.+}} {layer_name = "tvmgen_mrvl_main_0", axis = 3 : i64, start = 0 : i64}
// CHECK-NEXT:  %[[B:.+]] = mrvl.slice %{{.+}} {layer_name = "tvmgen_mrvl_main_1", axis = 3 : i64, start = 3 : i64}
// CHECK-NEXT:  mrvl.concat %[[A]], %[[B]] {layer_name = "tvmgen_mrvl_main_2", axis = 1 : i64}

// -----

// Not lowered: a resize of the channel axis stays a graph op with its reason.

func.func @resize_channels(%x: tensor<1x2x4x4xf32>) -> tensor<1x4x4x4xf32> {
  %y = graph.resize %x {mode = "nearest", coordinate_transformation_mode = "asymmetric", nearest_mode = "floor", scales = array<f32: 1.0, 2.0, 1.0, 1.0>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x4x4xf32>
  func.return %y : tensor<1x4x4x4xf32>
}

// CHECK-LABEL: func.func @resize_channels
// CHECK:       graph.resize {{.*}}mrvl.cpu_reason = "resize of the batch or channel axis is not supported"
// CHECK-NOT:   mrvl.

// -----

// Not lowered: a concat on a non-channel axis and a split whose results feed only CPU ops
// (an Exp) stay on the CPU: a copy at the border gains nothing.

func.func @border_copies(%x: tensor<1x4x3xf32>, %y: tensor<1x2x3xf32>) -> (tensor<1x6x3xf32>, tensor<1x3x3xf32>) {
  %c = graph.concat %x, %y {axis = 1 : i64} : (tensor<1x4x3xf32>, tensor<1x2x3xf32>) -> tensor<1x6x3xf32>
  %s = graph.onnx %c {op_type = "Exp", domain = "", opset = 17 : i64, attrs = {}} : (tensor<1x6x3xf32>) -> tensor<1x6x3xf32>
  %a, %b = graph.split %x {axis = 1 : i64, split = array<i64: 1, 3>} : (tensor<1x4x3xf32>) -> (tensor<1x1x3xf32>, tensor<1x3x3xf32>)
  %t = graph.onnx %b {op_type = "Exp", domain = "", opset = 17 : i64, attrs = {}} : (tensor<1x3x3xf32>) -> tensor<1x3x3xf32>
  func.return %s, %t : tensor<1x6x3xf32>, tensor<1x3x3xf32>
}

// CHECK-LABEL: func.func @border_copies
// CHECK:       graph.concat {{.*}}mrvl.cpu_reason = "copy feeding only CPU ops (kept on the CPU)"
// CHECK:       graph.split {{.*}}mrvl.cpu_reason = "copy feeding only CPU ops (kept on the CPU)"
// CHECK-NOT:   = mrvl.
