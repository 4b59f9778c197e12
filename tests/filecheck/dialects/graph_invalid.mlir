// RUN: mrvl-opt %s --verify-diagnostics --split-input-file | filecheck %s

func.func @conv_bad_result(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %0 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
  func.return
}
// CHECK: expected result type tensor<1x4x6x6xf32>, got tensor<1x4x8x8xf32>

// -----

func.func @conv_bad_channels(%x: tensor<1x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) {
  %0 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}
// CHECK: expected weight input channels 3, got 2

// -----

func.func @conv_bad_layout(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %0 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCWH", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}
// CHECK: expected data_layout NCHW or NHWC, got NCWH

// -----

func.func @conv_bad_pads(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  %0 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  func.return
}
// CHECK: expected 4 values in 'pads', got 2

// -----

func.func @add_not_broadcastable(%a: tensor<2x3xf32>, %b: tensor<4xf32>) {
  %0 = graph.add %a, %b : (tensor<2x3xf32>, tensor<4xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: expected broadcastable shapes, got [2, 3] and [4]

// -----

func.func @add_mixed_types(%a: tensor<2x3xf32>, %b: tensor<3xf16>) {
  %0 = graph.add %a, %b : (tensor<2x3xf32>, tensor<3xf16>) -> tensor<2x3xf32>
  func.return
}
// CHECK: expected operands of the same element type, got f32 and f16

// -----

func.func @gemm_inner(%a: tensor<2x4xf32>, %b: tensor<3x5xf32>) {
  %0 = graph.gemm %a, %b {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = 0 : i64, trans_b = 1 : i64} : (tensor<2x4xf32>, tensor<3x5xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: expected matching inner dimensions, got 4 and 5

// -----

func.func @reshape_count(%x: tensor<2x3xf32>) {
  %0 = graph.reshape %x : (tensor<2x3xf32>) -> tensor<7xf32>
  func.return
}
// CHECK: expected a result with 6 elements, got tensor<7xf32>

// -----

func.func @softmax_axis(%x: tensor<2x3xf32>) {
  %0 = graph.softmax %x {axis = -1 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: expected axis in [0, 2), got -1

// -----

func.func @split_sizes(%x: tensor<1x5xf32>) {
  %0, %1 = graph.split %x {axis = 1 : i64, split = array<i64: 2, 2>} : (tensor<1x5xf32>) -> (tensor<1x2xf32>, tensor<1x2xf32>)
  func.return
}
// CHECK: expected split sizes summing to 5, got [2, 2]

// -----

func.func @squeeze_not_one(%x: tensor<1x4xf32>) {
  %0 = graph.squeeze %x {axes = array<i64: 1>} : (tensor<1x4xf32>) -> tensor<1xf32>
  func.return
}
// CHECK: expected dimension 1 of size 1, got 4

// -----

func.func @transpose_perm(%x: tensor<2x3xf32>) {
  %0 = graph.transpose %x {perm = array<i64: 0, 0>} : (tensor<2x3xf32>) -> tensor<2x2xf32>
  func.return
}
// CHECK: expected a permutation of 2 axes, got [0, 0]

// -----

func.func @layout(%x: tensor<1x2x3x4xf32>) {
  %0 = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NHWX"} : (tensor<1x2x3x4xf32>) -> tensor<1x3x4x2xf32>
  func.return
}
// CHECK: expected src and dst layouts permuting the 4 axes, got NCHW and NHWX

// -----

func.func @pad_mode(%x: tensor<2x3xf32>) {
  %0 = graph.pad %x {pads = array<i64: 0, 1, 0, 1>, mode = "wrap", value = 0.0 : f32} : (tensor<2x3xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: expected mode constant, reflect or edge, got wrap

// -----

func.func @batch_norm_param(%x: tensor<1x4x2x2xf32>, %s: tensor<3xf32>) {
  %0 = graph.batch_norm %x, %s, %s, %s, %s {epsilon = 1.0e-05 : f32, layout = "NCHW"} : (tensor<1x4x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> tensor<1x4x2x2xf32>
  func.return
}
// CHECK: expected scale shape [4], got [3]

// -----

func.func @concat_mismatch(%a: tensor<1x2xf32>, %b: tensor<2x3xf32>) {
  %0 = graph.concat %a, %b {axis = 1 : i64} : (tensor<1x2xf32>, tensor<2x3xf32>) -> tensor<1x5xf32>
  func.return
}
// CHECK: expected inputs matching [1, 2] except on axis 1, got [2, 3]

// -----

func.func @pool_empty(%x: tensor<1x1x2x2xf32>) {
  %0 = graph.max_pool2d %x {kernel_shape = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 0 : i64, layout = "NCHW"} : (tensor<1x1x2x2xf32>) -> tensor<1x1x1x1xf32>
  func.return
}
// CHECK: expected a non-empty output, got 0x0

// -----

func.func @dynamic(%x: tensor<?x4xf32>) {
  %0 = graph.relu %x : (tensor<?x4xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: expected static shapes, got tensor<?x4xf32>

// -----

func.func @constant_type() {
  %0 = "graph.constant"() <{value = dense<[1.0, 2.0]> : tensor<2xf32>}> : () -> tensor<3xf32>
  func.return
}
// CHECK: expected result type tensor<2xf32>, got tensor<3xf32>

// -----

func.func @onnx_indices(%x: tensor<2xf32>) {
  %0 = graph.onnx %x {op_type = "Foo", domain = "", opset = 17 : i64, attrs = {}, input_indices = array<i64: 1, 0>} : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: expected 1 values in input_indices, got 2
