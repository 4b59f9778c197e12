// RUN: mrvl-opt %s -p convert-graph-to-mrvl --split-input-file | filecheck %s

// [pad 0] conv2d + add const + relu -> one mrvl.conv2d with merged pads and a bias.

func.func @conv_chain(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<3x3x3x2xf32>
  %p = graph.pad %x {pads = array<i64: 0, 1, 1, 0, 0, 1, 1, 0>, mode = "constant", value = 0.000000e+00 : f32, onnx_node = "pad0"} : (tensor<1x4x4x2xf32>) -> tensor<1x6x6x2xf32>
  %c = graph.conv2d %p, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NHWC", kernel_layout = "OHWI", onnx_node = "conv0"} : (tensor<1x6x6x2xf32>, tensor<3x3x3x2xf32>) -> tensor<1x4x4x3xf32>
  %b = graph.constant dense<1.000000e+00> : tensor<3xf32>
  %a = graph.add %c, %b {onnx_node = "add0"} : (tensor<1x4x4x3xf32>, tensor<3xf32>) -> tensor<1x4x4x3xf32>
  %r = graph.relu %a {onnx_node = "relu0"} : (tensor<1x4x4x3xf32>) -> tensor<1x4x4x3xf32>
  func.return %r : tensor<1x4x4x3xf32>
}

// CHECK-LABEL: func.func @conv_chain
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4x4x2xf32>)
// CHECK:       %[[B:.+]] = graph.constant dense<1.000000e+00> : tensor<3xf32>
// CHECK-NEXT:  %[[Y:.+]] = mrvl.conv2d %[[X]], %{{.+}}, %[[B]] {onnx_nodes = ["pad0", "conv0", "add0", "relu0"], layer_name = "tvmgen_mrvl_main_0", strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, {{.*}}activation = "relu"}
// CHECK-NOT:   graph.
// CHECK:       func.return %[[Y]]

// -----

// Depthwise conv + clip(0, 6) -> mrvl.conv2d with a fused relu6; then a max pool and a
// global average pool.

func.func @depthwise_pools(%x: tensor<1x4x4x2xf32>) -> tensor<1x1x1x2xf32> {
  %w = graph.constant dense<2.500000e-01> : tensor<2x3x3x1xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64, data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x4x4x2xf32>, tensor<2x3x3x1xf32>) -> tensor<1x4x4x2xf32>
  %k = graph.clip %c {min = 0.000000e+00 : f32, max = 6.000000e+00 : f32} : (tensor<1x4x4x2xf32>) -> tensor<1x4x4x2xf32>
  %m = graph.max_pool2d %k {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 0 : i64, layout = "NHWC"} : (tensor<1x4x4x2xf32>) -> tensor<1x2x2x2xf32>
  %g = graph.global_avg_pool2d %m {layout = "NHWC"} : (tensor<1x2x2x2xf32>) -> tensor<1x1x1x2xf32>
  func.return %g : tensor<1x1x1x2xf32>
}

// CHECK-LABEL: func.func @depthwise_pools
// CHECK:       %[[C:.+]] = mrvl.conv2d {{.*}}layer_name = "tvmgen_mrvl_main_0", {{.*}}groups = 2 : i64, activation = "clip", clip_min = 0.000000e+00 : f32, clip_max = 6.000000e+00 : f32}
// CHECK-NEXT:  %[[M:.+]] = mrvl.maxpool2d %[[C]] {layer_name = "tvmgen_mrvl_main_1", kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>}
// CHECK-NEXT:  %[[G:.+]] = mrvl.global_avgpool2d %[[M]] {layer_name = "tvmgen_mrvl_main_2"}
// CHECK-NEXT:  func.return %[[G]]

// -----

// NHWC -> NCHW transform + flatten + dense + bias_add + relu -> one FC with
// weights_need_transform; an add of two tensors + relu -> Sum2D; concat on channels.

func.func @fc_sum_concat(%x: tensor<1x2x2x3xf32>, %y: tensor<1x2x2x3xf32>) -> (tensor<1x4xf32>, tensor<1x2x2x6xf32>) {
  %t = graph.layout_transform %x {src_layout = "NHWC", dst_layout = "NCHW"} : (tensor<1x2x2x3xf32>) -> tensor<1x3x2x2xf32>
  %f = graph.flatten %t {axis = 1 : i64} : (tensor<1x3x2x2xf32>) -> tensor<1x12xf32>
  %w = graph.constant dense<1.000000e+00> : tensor<4x12xf32>
  %d = graph.dense %f, %w : (tensor<1x12xf32>, tensor<4x12xf32>) -> tensor<1x4xf32>
  %b = graph.constant dense<2.000000e+00> : tensor<4xf32>
  %ba = graph.bias_add %d, %b {axis = 1 : i64} : (tensor<1x4xf32>, tensor<4xf32>) -> tensor<1x4xf32>
  %r = graph.relu %ba : (tensor<1x4xf32>) -> tensor<1x4xf32>
  %s = graph.add %x, %y : (tensor<1x2x2x3xf32>, tensor<1x2x2x3xf32>) -> tensor<1x2x2x3xf32>
  %sr = graph.relu %s : (tensor<1x2x2x3xf32>) -> tensor<1x2x2x3xf32>
  %c = graph.concat %sr, %x {axis = 3 : i64} : (tensor<1x2x2x3xf32>, tensor<1x2x2x3xf32>) -> tensor<1x2x2x6xf32>
  func.return %r, %c : tensor<1x4xf32>, tensor<1x2x2x6xf32>
}

// CHECK-LABEL: func.func @fc_sum_concat
// CHECK-SAME:  (%[[X:.+]]: tensor<1x2x2x3xf32>, %[[Y:.+]]: tensor<1x2x2x3xf32>)
// CHECK:       %[[FC:.+]] = mrvl.fc %[[X]], %{{.+}}, %{{.+}} {{{.*}}activation = "relu", weights_need_transform} : (tensor<1x2x2x3xf32>, tensor<4x12xf32>, tensor<4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:  %[[S:.+]] = mrvl.sum %[[X]], %[[Y]] {{{.*}}activation = "relu"}
// CHECK-NEXT:  %[[C:.+]] = mrvl.concat %[[S]], %[[X]] {{{.*}}axis = 3 : i64}
// CHECK-NEXT:  func.return %[[FC]], %[[C]]

// -----

// Reshape to [N, rest] -> batch_flatten; layout_transform NCHW -> NHWC and transpose are
// bare layers.

func.func @shape_ops(%x: tensor<1x3x2x2xf32>) -> (tensor<1x12xf32>, tensor<2x2x3x1xf32>) {
  %l = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x3x2x2xf32>) -> tensor<1x2x2x3xf32>
  %r = graph.reshape %l : (tensor<1x2x2x3xf32>) -> tensor<1x12xf32>
  %t = graph.transpose %l {perm = array<i64: 1, 2, 3, 0>} : (tensor<1x2x2x3xf32>) -> tensor<2x2x3x1xf32>
  func.return %r, %t : tensor<1x12xf32>, tensor<2x2x3x1xf32>
}

// CHECK-LABEL: func.func @shape_ops
// CHECK:       %[[L:.+]] = mrvl.layout_transform %{{.+}} {layer_name = "tvmgen_mrvl_main_0", src_layout = "NCHW", dst_layout = "NHWC"}
// CHECK-NEXT:  mrvl.batch_flatten %[[L]] {layer_name = "tvmgen_mrvl_main_1"}
// CHECK-NEXT:  mrvl.transpose %[[L]] {layer_name = "tvmgen_mrvl_main_2", perm = array<i64: 1, 2, 3, 0>}
