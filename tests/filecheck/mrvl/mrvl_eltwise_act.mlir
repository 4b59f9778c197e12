// RUN: mrvl-opt %s --split-input-file | filecheck %s
// RUN: mrvl-opt %s --split-input-file | mrvl-opt --split-input-file | filecheck %s

// mrvl.mul (broadcasting, fused activation) and the standalone mrvl.activation layer parse,
// print in the uniform form and re-print identically.

func.func @eltwise_act(%x: tensor<1x4x4x8xf32>, %s: tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32> {
  %c = graph.constant dense<5.000000e-01> : tensor<1xf32>
  %0 = mrvl.activation %x {layer_name = "tvmgen_mrvl_main_0", activation = "sigmoid"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %1 = mrvl.mul %x, %0 {layer_name = "tvmgen_mrvl_main_1", activation = "none"} : (tensor<1x4x4x8xf32>, tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %2 = mrvl.mul %1, %s {layer_name = "tvmgen_mrvl_main_2", activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 6.000000e+00 : f32} : (tensor<1x4x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32>
  %3 = mrvl.mul %c, %2 {layer_name = "tvmgen_mrvl_main_3", activation = "relu"} : (tensor<1xf32>, tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %4 = mrvl.activation %3 {layer_name = "tvmgen_mrvl_main_4", activation = "leaky_relu", alpha = 1.000000e-01 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %5 = mrvl.activation %4 {layer_name = "tvmgen_mrvl_main_5", activation = "tanh"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %6 = mrvl.activation %5 {layer_name = "tvmgen_mrvl_main_6", activation = "clip", clip_min = -1.000000e+00 : f32, clip_max = 1.000000e+00 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  %7 = mrvl.activation %6 {layer_name = "tvmgen_mrvl_main_7", activation = "relu"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
  func.return %7 : tensor<1x4x4x8xf32>
}

// CHECK-LABEL: func.func @eltwise_act
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4x4x8xf32>, %[[S:.+]]: tensor<1x1x1x8xf32>)
// CHECK:       %[[C:.+]] = graph.constant
// CHECK-NEXT:  %[[A0:.+]] = mrvl.activation %[[X]] {layer_name = "tvmgen_mrvl_main_0", activation = "sigmoid"} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
// CHECK-NEXT:  %[[M1:.+]] = mrvl.mul %[[X]], %[[A0]] {layer_name = "tvmgen_mrvl_main_1", activation = "none"} : (tensor<1x4x4x8xf32>, tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
// CHECK-NEXT:  %[[M2:.+]] = mrvl.mul %[[M1]], %[[S]] {layer_name = "tvmgen_mrvl_main_2", activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 6.000000e+00 : f32} : (tensor<1x4x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x4x4x8xf32>
// CHECK-NEXT:  %[[M3:.+]] = mrvl.mul %[[C]], %[[M2]] {layer_name = "tvmgen_mrvl_main_3", activation = "relu"} : (tensor<1xf32>, tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
// CHECK-NEXT:  %[[A4:.+]] = mrvl.activation %[[M3]] {layer_name = "tvmgen_mrvl_main_4", activation = "leaky_relu", alpha = 1.000000e-01 : f32}
// CHECK-NEXT:  %[[A5:.+]] = mrvl.activation %[[A4]] {layer_name = "tvmgen_mrvl_main_5", activation = "tanh"}
// CHECK-NEXT:  %[[A6:.+]] = mrvl.activation %[[A5]] {layer_name = "tvmgen_mrvl_main_6", activation = "clip", clip_min = -1.000000e+00 : f32, clip_max = 1.000000e+00 : f32}
// CHECK-NEXT:  %[[A7:.+]] = mrvl.activation %[[A6]] {layer_name = "tvmgen_mrvl_main_7", activation = "relu"}
// CHECK-NEXT:  func.return %[[A7]] : tensor<1x4x4x8xf32>
