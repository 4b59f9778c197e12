// RUN: mrvl-opt %s -p graph-layout-nhwc --split-input-file | filecheck %s

// pad -> conv -> relu -> add(residual, per-channel constant) -> max_pool -> flatten:
// one layout_transform at the input (shared by both users of %x, moved above the pad),
// everything NHWC, the weight rewritten OHWI, the [C,1,1] constant as [1,1,1,C], and one
// layout_transform back before the flatten (not an accelerator op in NHWC).

func.func @region(%x: tensor<1x2x4x4xf32>) -> tensor<1x8xf32> {
  %p = graph.pad %x {pads = array<i64: 0, 0, 1, 1, 0, 0, 1, 1>, mode = "constant", value = 0.000000e+00 : f32} : (tensor<1x2x4x4xf32>) -> tensor<1x2x6x6xf32>
  %w = graph.constant dense<[[[[1.000000e+00, 2.000000e+00, 3.000000e+00]]], [[[4.000000e+00, 5.000000e+00, 6.000000e+00]]]]> : tensor<2x1x1x3xf32>
  %c = graph.conv2d %p, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x2x6x6xf32>, tensor<2x1x1x3xf32>) -> tensor<1x2x6x4xf32>
  %r = graph.relu %c : (tensor<1x2x6x4xf32>) -> tensor<1x2x6x4xf32>
  %m = graph.max_pool2d %r {kernel_shape = array<i64: 3, 1>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 0 : i64, layout = "NCHW"} : (tensor<1x2x6x4xf32>) -> tensor<1x2x4x4xf32>
  %k = graph.constant dense<[[[1.000000e+00]], [[2.000000e+00]]]> : tensor<2x1x1xf32>
  %a = graph.add %m, %x : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %b = graph.add %a, %k : (tensor<1x2x4x4xf32>, tensor<2x1x1xf32>) -> tensor<1x2x4x4xf32>
  %g = graph.avg_pool2d %b {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, ceil_mode = 0 : i64, count_include_pad = 0 : i64, layout = "NCHW"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x2x2xf32>
  %f = graph.flatten %g {axis = 1 : i64} : (tensor<1x2x2x2xf32>) -> tensor<1x8xf32>
  func.return %f : tensor<1x8xf32>
}

// CHECK-LABEL: func.func @region
// CHECK-SAME:  (%[[X:.+]]: tensor<1x2x4x4xf32>)
// CHECK-NEXT:    %[[XT:.+]] = graph.layout_transform %[[X]] {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x4x4xf32>) -> tensor<1x4x4x2xf32>
// CHECK-NEXT:    %[[P:.+]] = graph.pad %[[XT]] {pads = array<i64: 0, 1, 1, 0, 0, 1, 1, 0>, {{.*}} -> tensor<1x6x6x2xf32>
// CHECK-NEXT:    %[[W:.+]] = graph.constant dense<{{\[\[\[}}[1.000000e+00], [2.000000e+00], [3.000000e+00]]], {{\[\[}}[4.000000e+00], [5.000000e+00], [6.000000e+00]]]]> : tensor<2x1x3x1xf32>
// CHECK-NEXT:    %[[C:.+]] = graph.conv2d %[[P]], %[[W]] {{.*}}data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x6x6x2xf32>, tensor<2x1x3x1xf32>) -> tensor<1x6x4x2xf32>
// CHECK-NEXT:    %[[R:.+]] = graph.relu %[[C]] : (tensor<1x6x4x2xf32>) -> tensor<1x6x4x2xf32>
// CHECK-NEXT:    %[[M:.+]] = graph.max_pool2d %[[R]] {{.*}}layout = "NHWC"} : (tensor<1x6x4x2xf32>) -> tensor<1x4x4x2xf32>
// CHECK-NEXT:    %[[K:.+]] = graph.constant dense<{{\[\[\[}}[1.000000e+00, 2.000000e+00]]]]> : tensor<1x1x1x2xf32>
// CHECK-NEXT:    %[[A:.+]] = graph.add %[[M]], %[[XT]] : (tensor<1x4x4x2xf32>, tensor<1x4x4x2xf32>) -> tensor<1x4x4x2xf32>
// CHECK-NEXT:    %[[B:.+]] = graph.add %[[A]], %[[K]] : (tensor<1x4x4x2xf32>, tensor<1x1x1x2xf32>) -> tensor<1x4x4x2xf32>
// CHECK-NEXT:    %[[G:.+]] = graph.avg_pool2d %[[B]] {{.*}}layout = "NHWC"} : (tensor<1x4x4x2xf32>) -> tensor<1x2x2x2xf32>
// CHECK-NEXT:    %[[GT:.+]] = graph.layout_transform %[[G]] {src_layout = "NHWC", dst_layout = "NCHW"}
// CHECK-NEXT:    %[[F:.+]] = graph.flatten %[[GT]]
// CHECK-NEXT:    func.return %[[F]]

// -----

// Not lowered: a conv2d whose weight is not a constant, ops with no NHWC neighbour (a relu
// on an input, a 2-D add) and an op already in NHWC.

func.func @not_lowered(%x: tensor<1x2x4x4xf32>, %w: tensor<2x2x1x1xf32>, %v: tensor<1x4xf32>, %n: tensor<1x4x4x2xf32>) -> (tensor<1x2x4x4xf32>, tensor<1x4xf32>, tensor<1x2x2x2xf32>) {
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x2x4x4xf32>, tensor<2x2x1x1xf32>) -> tensor<1x2x4x4xf32>
  %r = graph.relu %c : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %a = graph.add %v, %v : (tensor<1x4xf32>, tensor<1x4xf32>) -> tensor<1x4xf32>
  %m = graph.max_pool2d %n {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 0 : i64, layout = "NHWC"} : (tensor<1x4x4x2xf32>) -> tensor<1x2x2x2xf32>
  func.return %r, %a, %m : tensor<1x2x4x4xf32>, tensor<1x4xf32>, tensor<1x2x2x2xf32>
}

// CHECK-LABEL: func.func @not_lowered
// CHECK-NOT:     graph.layout_transform
// CHECK:         graph.conv2d {{.*}}data_layout = "NCHW", kernel_layout = "OIHW"}
// CHECK-NEXT:    graph.relu
// CHECK-NEXT:    graph.add
// CHECK-NEXT:    graph.max_pool2d {{.*}}layout = "NHWC"}
// CHECK-NEXT:    func.return
