// RUN: mrvl-opt %s --verify-diagnostics --split-input-file | filecheck %s

func.func @conv_bad_result(%x: tensor<1x8x8x3xf32>, %w: tensor<4x3x3x3xf32>) {
  %0 = mrvl.conv2d %x, %w {layer_name = "tvmgen_mrvl_main_0", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "none"} : (tensor<1x8x8x3xf32>, tensor<4x3x3x3xf32>) -> tensor<1x8x8x4xf32>
  func.return
}
// CHECK: expected result shape [1, 6, 6, 4], got [1, 8, 8, 4]

// -----

func.func @conv_bad_groups(%x: tensor<1x8x8x4xf32>, %w: tensor<4x3x3x2xf32>) {
  %0 = mrvl.conv2d %x, %w {layer_name = "tvmgen_mrvl_main_0", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "none"} : (tensor<1x8x8x4xf32>, tensor<4x3x3x2xf32>) -> tensor<1x8x8x4xf32>
  func.return
}
// CHECK: expected weight input channels 4 (= 4 / groups 1), got 2

// -----

func.func @conv_bad_bias(%x: tensor<1x8x8x3xf32>, %w: tensor<4x1x1x3xf32>, %b: tensor<3xf32>) {
  %0 = mrvl.conv2d %x, %w, %b {layer_name = "tvmgen_mrvl_main_0", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "none"} : (tensor<1x8x8x3xf32>, tensor<4x1x1x3xf32>, tensor<3xf32>) -> tensor<1x8x8x4xf32>
  func.return
}
// CHECK: expected bias shape [4], got [3]

// -----

func.func @bad_activation(%x: tensor<1x8x8x3xf32>, %w: tensor<4x1x1x3xf32>) {
  %0 = mrvl.conv2d %x, %w {layer_name = "tvmgen_mrvl_main_0", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "tanh"} : (tensor<1x8x8x3xf32>, tensor<4x1x1x3xf32>) -> tensor<1x8x8x4xf32>
  func.return
}
// CHECK: expected activation in ['none', 'relu', 'clip', 'sigmoid', 'silu', 'gelu', 'gelu_tanh'], got "tanh"

// -----

func.func @clip_without_bounds(%a: tensor<1x4xf32>) {
  %0 = mrvl.sum %a, %a {layer_name = "tvmgen_mrvl_main_0", activation = "clip"} : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return
}
// CHECK: expected clip_min and clip_max with activation "clip"

// -----

func.func @empty_name(%x: tensor<1x4x4x2xf32>) {
  %0 = mrvl.global_avgpool2d %x {layer_name = ""} : (tensor<1x4x4x2xf32>) -> tensor<1x1x1x2xf32>
  func.return
}
// CHECK: expected a non-empty layer_name

// -----

func.func @fc_bad_features(%x: tensor<1x5xf32>, %w: tensor<2x4xf32>) {
  %0 = mrvl.fc %x, %w {layer_name = "tvmgen_mrvl_main_0", activation = "none"} : (tensor<1x5xf32>, tensor<2x4xf32>) -> tensor<1x2xf32>
  func.return
}
// CHECK: expected input features 4 (weight [O, K]), got 5

// -----

func.func @fc_transform_needs_nhwc(%x: tensor<1x4xf32>, %w: tensor<2x4xf32>) {
  %0 = mrvl.fc %x, %w {layer_name = "tvmgen_mrvl_main_0", activation = "none", weights_need_transform} : (tensor<1x4xf32>, tensor<2x4xf32>) -> tensor<1x2xf32>
  func.return
}
// CHECK: expected NHWC input of rank 4 with weights_need_transform, got [1, 4]

// -----

func.func @f16_input(%x: tensor<1x4x4x2xf16>) {
  %0 = mrvl.global_maxpool2d %x {layer_name = "tvmgen_mrvl_main_0"} : (tensor<1x4x4x2xf16>) -> tensor<1x1x1x2xf16>
  func.return
}
// CHECK: expected f32 tensors, got tensor<1x4x4x2xf16>

// -----

func.func @pool_bad_result(%x: tensor<1x4x4x2xf32>) {
  %0 = mrvl.maxpool2d %x {layer_name = "tvmgen_mrvl_main_0", kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x4x2xf32>) -> tensor<1x4x4x2xf32>
  func.return
}
// CHECK: expected result shape [1, 2, 2, 2], got [1, 4, 4, 2]

// -----

func.func @concat_mismatch(%a: tensor<1x4x4x2xf32>, %b: tensor<1x3x4x2xf32>) {
  %0 = mrvl.concat %a, %b {layer_name = "tvmgen_mrvl_main_0", axis = 3 : i64} : (tensor<1x4x4x2xf32>, tensor<1x3x4x2xf32>) -> tensor<1x4x4x4xf32>
  func.return
}
// CHECK: expected inputs equal except on axis 3

// -----

func.func @sum_no_broadcast(%a: tensor<1x4xf32>, %b: tensor<1x3xf32>) {
  %0 = mrvl.sum %a, %b {layer_name = "tvmgen_mrvl_main_0", activation = "none"} : (tensor<1x4xf32>, tensor<1x3xf32>) -> tensor<1x4xf32>
  func.return
}
// CHECK: expected broadcastable operands, got [1, 4] and [1, 3]

// -----

func.func @layout_mismatch(%x: tensor<1x3x4x4xf32>) {
  %0 = mrvl.layout_transform %x {layer_name = "tvmgen_mrvl_main_0", src_layout = "NCHW", dst_layout = "NHW"} : (tensor<1x3x4x4xf32>) -> tensor<1x4x4x3xf32>
  func.return
}
// CHECK: expected layouts of rank 4 with the same axes, got "NCHW" -> "NHW"

// -----

func.func @squeeze_non_unit(%x: tensor<1x4x1x2xf32>) {
  %0 = mrvl.squeeze %x {layer_name = "tvmgen_mrvl_main_0", axes = array<i64: 1>} : (tensor<1x4x1x2xf32>) -> tensor<1x1x2xf32>
  func.return
}
// CHECK: expected axes of size-1 dimensions of [1, 4, 1, 2], got [1]

// -----

func.func @reshape_count(%x: tensor<1x4xf32>) {
  %0 = mrvl.reshape %x {layer_name = "tvmgen_mrvl_main_0"} : (tensor<1x4xf32>) -> tensor<1x5xf32>
  func.return
}
// CHECK: expected a result with 4 elements, got [1, 5]

// -----

func.func @transpose_bad_perm(%x: tensor<1x4xf32>) {
  %0 = mrvl.transpose %x {layer_name = "tvmgen_mrvl_main_0", perm = array<i64: 0, 0>} : (tensor<1x4xf32>) -> tensor<1x1xf32>
  func.return
}
// CHECK: expected a permutation of 2 axes, got [0, 0]

// -----

func.func @flatten_bad(%x: tensor<2x3x4xf32>) {
  %0 = mrvl.batch_flatten %x {layer_name = "tvmgen_mrvl_main_0"} : (tensor<2x3x4xf32>) -> tensor<1x24xf32>
  func.return
}
// CHECK: expected result shape [2, 12], got [1, 24]
