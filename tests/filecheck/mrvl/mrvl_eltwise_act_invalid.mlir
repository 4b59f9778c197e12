// RUN: mrvl-opt %s --split-input-file --verify-diagnostics | filecheck %s

// Verifier errors of mrvl.mul and mrvl.activation.

func.func @mul_no_broadcast(%a: tensor<1x4x4x8xf32>, %b: tensor<1x1x1x4xf32>) {
  %0 = mrvl.mul %a, %b {layer_name = "tvmgen_mrvl_main_0", activation = "none"} : (tensor<1x4x4x8xf32>, tensor<1x1x1x4xf32>) -> tensor<1x4x4x8xf32>
  func.return
}
// CHECK: expected broadcastable operands, got [1, 4, 4, 8] and [1, 1, 1, 4]

// -----

func.func @mul_bad_result(%a: tensor<1x4x4x8xf32>, %b: tensor<1x1x1x8xf32>) {
  %0 = mrvl.mul %a, %b {layer_name = "tvmgen_mrvl_main_0", activation = "none"} : (tensor<1x4x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf32>
  func.return
}
// CHECK: expected result shape [1, 4, 4, 8], got [1, 1, 1, 8]

// -----

func.func @mul_tanh(%a: tensor<1x4x4x8xf32>, %b: tensor<1x1x1x8xf32>) {
  %0 = mrvl.mul %a, %b {layer_name = "tvmgen_mrvl_main_0", activation = "tanh"} : (tensor<1x4x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32>
  func.return
}
// CHECK: expected activation in ['none', 'relu', 'clip', 'sigmoid', 'silu', 'gelu', 'gelu_tanh'], got "tanh"

// -----

func.func @activation_none(%x: tensor<1x4x4x8xf32>) {
  %0 = mrvl.activation %x {layer_name = "tvmgen_mrvl_main_0", activation = "none"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return
}
// CHECK: expected activation in ['relu', 'clip', 'sigmoid', 'tanh', 'leaky_relu', 'gelu', 'gelu_tanh'], got "none"

// -----

func.func @leaky_without_alpha(%x: tensor<1x4x4x8xf32>) {
  %0 = mrvl.activation %x {layer_name = "tvmgen_mrvl_main_0", activation = "leaky_relu"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return
}
// CHECK: expected alpha exactly with activation "leaky_relu", got activation "leaky_relu" without alpha

// -----

func.func @clip_without_bounds(%x: tensor<1x4x4x8xf32>) {
  %0 = mrvl.activation %x {layer_name = "tvmgen_mrvl_main_0", activation = "clip"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return
}
// CHECK: expected clip_min and clip_max with activation "clip"

// -----

func.func @activation_bad_result(%x: tensor<1x4x4x8xf32>) {
  %0 = mrvl.activation %x {layer_name = "tvmgen_mrvl_main_0", activation = "relu"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x8xf32>
  func.return
}
// CHECK: expected result shape [1, 4, 4, 8], got [1, 4, 8]
