// RUN: mrvl-opt %s -p convert-graph-to-mrvl --split-input-file | filecheck %s

// Not lowered: each op keeps its graph form and says why in mrvl.cpu_reason.

// A pad with a non-zero value stays (the conv is still lowered, without it).
func.func @pad_value(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<3x3x3x2xf32>
  %p = graph.pad %x {pads = array<i64: 0, 1, 1, 0, 0, 1, 1, 0>, mode = "constant", value = 5.000000e-01 : f32} : (tensor<1x4x4x2xf32>) -> tensor<1x6x6x2xf32>
  %c = graph.conv2d %p, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x6x6x2xf32>, tensor<3x3x3x2xf32>) -> tensor<1x4x4x3xf32>
  func.return %c : tensor<1x4x4x3xf32>
}

// CHECK-LABEL: func.func @pad_value
// CHECK:       %[[P:.+]] = graph.pad {{.*}}mrvl.cpu_reason = "pad value 0.5 is not zero"
// CHECK:       mrvl.conv2d %[[P]]

// -----

// Batch over the limit, NCHW data, a non-constant weight.
func.func @conv_not_taken(%x: tensor<16x4x4x2xf32>, %n: tensor<1x2x4x4xf32>, %wv: tensor<3x1x1x2xf32>, %v: tensor<1x4x4x2xf32>) -> (tensor<16x4x4x3xf32>, tensor<1x3x4x4xf32>, tensor<1x4x4x3xf32>) {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %wn = graph.constant dense<5.000000e-01> : tensor<3x2x1x1xf32>
  %0 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<16x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<16x4x4x3xf32>
  %1 = graph.conv2d %n, %wn {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x2x4x4xf32>, tensor<3x2x1x1xf32>) -> tensor<1x3x4x4xf32>
  %2 = graph.conv2d %v, %wv {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  func.return %0, %1, %2 : tensor<16x4x4x3xf32>, tensor<1x3x4x4xf32>, tensor<1x4x4x3xf32>
}

// CHECK-LABEL: func.func @conv_not_taken
// CHECK:       graph.conv2d {{.*}}mrvl.cpu_reason = "batch 16 exceeds the accelerator limit 8"
// CHECK:       graph.conv2d {{.*}}mrvl.cpu_reason = "data layout NCHW is not NHWC (run graph-layout-nhwc first)"
// CHECK:       graph.conv2d {{.*}}mrvl.cpu_reason = "weight is not a constant"
// CHECK-NOT:   mrvl.

// -----

// An ONNX op the accelerator cannot take, an i64 tensor, a softmax, a concat
// of two constants (one is taken: ViT's class token), a pool with ceil_mode.
func.func @cpu_ops(%x: tensor<1x4xf32>, %s: tensor<1x4xf32>, %i: tensor<1x4xi64>, %h: tensor<1x4x4x2xf32>) -> (tensor<1x4xi64>, tensor<1x4xi64>, tensor<1x4xf32>, tensor<3x4xf32>, tensor<1x2x2x2xf32>) {
  %n = graph.onnx %x, %s {op_type = "TopK", domain = "", opset = 17 : i64, attrs = {}} : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<1x4xi64>
  %a = graph.add %i, %i : (tensor<1x4xi64>, tensor<1x4xi64>) -> tensor<1x4xi64>
  %t = graph.softmax %x {axis = 0 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  %k = graph.constant dense<1.000000e+00> : tensor<1x4xf32>
  %c = graph.concat %x, %k, %k {axis = 0 : i64} : (tensor<1x4xf32>, tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<3x4xf32>
  %m = graph.max_pool2d %h {kernel_shape = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 1 : i64, layout = "NHWC"} : (tensor<1x4x4x2xf32>) -> tensor<1x2x2x2xf32>
  func.return %n, %a, %t, %c, %m : tensor<1x4xi64>, tensor<1x4xi64>, tensor<1x4xf32>, tensor<3x4xf32>, tensor<1x2x2x2xf32>
}

// CHECK-LABEL: func.func @cpu_ops
// CHECK:       graph.onnx {{.*}}mrvl.cpu_reason = "graph.onnx TopK: not an accelerator op"
// CHECK:       graph.add {{.*}}mrvl.cpu_reason = "dtype i64 not supported"
// CHECK:       graph.softmax {{.*}}mrvl.cpu_reason = "softmax axis 0 is not the last axis"
// CHECK:       graph.concat {{.*}}mrvl.cpu_reason = "concat of 2 constants is not supported (at most one)"
// CHECK:       graph.max_pool2d {{.*}}mrvl.cpu_reason = "ceil_mode = 1 is not supported"
// CHECK-NOT:   mrvl.

// -----

// A conv whose result has a second user keeps its relu outside (not fused: the relu is a
// standalone activation layer), and a 5-D layout change stays.
func.func @not_fused(%x: tensor<1x4x4x2xf32>, %v: tensor<1x2x3x4x5xf32>) -> (tensor<1x4x4x3xf32>, tensor<1x4x4x3xf32>, tensor<1x3x4x5x2xf32>) {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %r = graph.relu %c : (tensor<1x4x4x3xf32>) -> tensor<1x4x4x3xf32>
  %t = graph.layout_transform %v {src_layout = "NCDHW", dst_layout = "NDHWC"} : (tensor<1x2x3x4x5xf32>) -> tensor<1x3x4x5x2xf32>
  func.return %c, %r, %t : tensor<1x4x4x3xf32>, tensor<1x4x4x3xf32>, tensor<1x3x4x5x2xf32>
}

// CHECK-LABEL: func.func @not_fused
// CHECK:       %[[C:.+]] = mrvl.conv2d {{.*}}activation = "none"
// CHECK-NEXT:  mrvl.activation %[[C]] {{{.*}}activation = "relu"}
// CHECK-NEXT:  graph.layout_transform {{.*}}mrvl.cpu_reason = "layout_transform NCDHW->NDHWC is not 4-D"
