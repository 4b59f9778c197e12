// RUN: mrvl-opt %s --split-input-file | filecheck %s
// RUN: mrvl-opt %s --split-input-file | mrvl-opt --split-input-file | filecheck %s

// Every mrvl layer op parses, prints in the uniform form and re-prints identically.

func.func @layers(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>, %dw: tensor<4x3x3x1xf32>, %fw: tensor<10x64xf32>) -> tensor<1x10xf32> {
  %0 = mrvl.layout_transform %x {layer_name = "tvmgen_mrvl_main_0", src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x3x8x8xf32>) -> tensor<1x8x8x3xf32>
  %1 = mrvl.conv2d %0, %w, %b {layer_name = "tvmgen_mrvl_main_1", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "relu"} : (tensor<1x8x8x3xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x8x8x4xf32>
  %2 = mrvl.conv2d %1, %dw {layer_name = "tvmgen_mrvl_main_2", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 4 : i64, activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 6.000000e+00 : f32} : (tensor<1x8x8x4xf32>, tensor<4x3x3x1xf32>) -> tensor<1x8x8x4xf32>
  %3 = mrvl.maxpool2d %2 {layer_name = "tvmgen_mrvl_main_3", kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x8x8x4xf32>) -> tensor<1x4x4x4xf32>
  %4 = mrvl.avgpool2d %3 {layer_name = "tvmgen_mrvl_main_4", kernel_shape = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, count_include_pad = 0 : i64} : (tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %5 = mrvl.sum %3, %4 {layer_name = "tvmgen_mrvl_main_5", activation = "sigmoid"} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %6 = mrvl.concat %5, %4 {layer_name = "tvmgen_mrvl_main_6", axis = 3 : i64} : (tensor<1x4x4x4xf32>, tensor<1x4x4x4xf32>) -> tensor<1x4x4x8xf32>
  %7 = mrvl.global_avgpool2d %6 {layer_name = "tvmgen_mrvl_main_7"} : (tensor<1x4x4x8xf32>) -> tensor<1x1x1x8xf32>
  %8 = mrvl.global_maxpool2d %6 {layer_name = "tvmgen_mrvl_main_8"} : (tensor<1x4x4x8xf32>) -> tensor<1x1x1x8xf32>
  %9 = mrvl.squeeze %8 {layer_name = "tvmgen_mrvl_main_9", axes = array<i64: 1, 2>} : (tensor<1x1x1x8xf32>) -> tensor<1x8xf32>
  %10 = mrvl.reshape %7 {layer_name = "tvmgen_mrvl_main_10"} : (tensor<1x1x1x8xf32>) -> tensor<1x8xf32>
  %11 = mrvl.transpose %6 {layer_name = "tvmgen_mrvl_main_11", perm = array<i64: 0, 3, 1, 2>} : (tensor<1x4x4x8xf32>) -> tensor<1x8x4x4xf32>
  %12 = mrvl.batch_flatten %11 {layer_name = "tvmgen_mrvl_main_12"} : (tensor<1x8x4x4xf32>) -> tensor<1x128xf32>
  %13 = mrvl.fc %3, %fw {layer_name = "tvmgen_mrvl_main_13", activation = "none", weights_need_transform} : (tensor<1x4x4x4xf32>, tensor<10x64xf32>) -> tensor<1x10xf32>
  func.return %13 : tensor<1x10xf32>
}

// CHECK-LABEL: func.func @layers
// CHECK:       %[[LT:.+]] = mrvl.layout_transform %{{.+}} {layer_name = "tvmgen_mrvl_main_0", src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x3x8x8xf32>) -> tensor<1x8x8x3xf32>
// CHECK-NEXT:  %[[C1:.+]] = mrvl.conv2d %[[LT]], %{{.+}}, %{{.+}} {layer_name = "tvmgen_mrvl_main_1", {{.*}} groups = 1 : i64, activation = "relu"}
// CHECK-NEXT:  %[[C2:.+]] = mrvl.conv2d %[[C1]], %{{[^,]+}} {{{.*}}groups = 4 : i64, activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 6.000000e+00 : f32} : (tensor<1x8x8x4xf32>, tensor<4x3x3x1xf32>) -> tensor<1x8x8x4xf32>
// CHECK-NEXT:  %[[MP:.+]] = mrvl.maxpool2d %[[C2]] {layer_name = "tvmgen_mrvl_main_3", kernel_shape = array<i64: 2, 2>
// CHECK-NEXT:  %[[AP:.+]] = mrvl.avgpool2d %[[MP]] {{{.*}}count_include_pad = 0 : i64}
// CHECK-NEXT:  %[[S:.+]] = mrvl.sum %[[MP]], %[[AP]] {layer_name = "tvmgen_mrvl_main_5", activation = "sigmoid"}
// CHECK-NEXT:  %[[CC:.+]] = mrvl.concat %[[S]], %[[AP]] {layer_name = "tvmgen_mrvl_main_6", axis = 3 : i64}
// CHECK-NEXT:  mrvl.global_avgpool2d %[[CC]]
// CHECK-NEXT:  mrvl.global_maxpool2d %[[CC]]
// CHECK-NEXT:  mrvl.squeeze {{.*}}axes = array<i64: 1, 2>
// CHECK-NEXT:  mrvl.reshape
// CHECK-NEXT:  mrvl.transpose {{.*}}perm = array<i64: 0, 3, 1, 2>
// CHECK-NEXT:  mrvl.batch_flatten {{.*}} : (tensor<1x8x4x4xf32>) -> tensor<1x128xf32>
// CHECK-NEXT:  mrvl.fc %[[MP]], %{{.+}} {layer_name = "tvmgen_mrvl_main_13", activation = "none", weights_need_transform}

// -----

// A partitioned module: @main calls an accelerator sub-graph.

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

// CHECK-LABEL: func.func @main
// CHECK:       func.call @tvmgen_mrvl_main_0
// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK-SAME:  attributes {mrvl.target = "accelerator"}
// CHECK:       mrvl.fc %{{.+}}, %{{.+}}, %{{.+}} {layer_name = "tvmgen_mrvl_main_0", activation = "relu"}
