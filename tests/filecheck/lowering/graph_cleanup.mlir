// RUN: mrvl-opt %s -p graph-cleanup | filecheck %s
// RUN: mrvl-opt %s -p "graph-cleanup{layout=NCHW}" | filecheck %s --check-prefix=NCHW
// RUN: not mrvl-opt %s -p "graph-cleanup{layout=NCWH}" 2>&1 | filecheck %s --check-prefix=BAD

// BAD: mrvl-opt: error: graph-cleanup: expected layout NHWC or NCHW, got 'NCWH'

// An MNIST-like chain: identity, conv + add + batch-norm + relu, dropout, max-pool, flatten,
// gemm. After the cleanup: one layout_transform in, conv2d (NHWC, OHWI, with the folded
// bias), relu, max_pool2d, one layout_transform out, flatten, dense + bias_add.

func.func @main(%x: tensor<1x1x6x6xf32>) -> tensor<1x3xf32> {
  %i = graph.identity %x : (tensor<1x1x6x6xf32>) -> tensor<1x1x6x6xf32>
  %w = graph.constant dense<1.000000e+00> : tensor<2x1x3x3xf32>
  %c = graph.conv2d %i, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x1x6x6xf32>, tensor<2x1x3x3xf32>) -> tensor<1x2x6x6xf32>
  %k = graph.constant dense<1.000000e+00> : tensor<2x1x1xf32>
  %a = graph.add %c, %k : (tensor<1x2x6x6xf32>, tensor<2x1x1xf32>) -> tensor<1x2x6x6xf32>
  %p = graph.constant dense<2.000000e+00> : tensor<2xf32>
  %bn = graph.batch_norm %a, %p, %p, %p, %p {epsilon = 0.000000e+00 : f32, layout = "NCHW"} : (tensor<1x2x6x6xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<1x2x6x6xf32>
  %r = graph.relu %bn : (tensor<1x2x6x6xf32>) -> tensor<1x2x6x6xf32>
  %d = graph.dropout %r {ratio = 5.000000e-01 : f32} : (tensor<1x2x6x6xf32>) -> tensor<1x2x6x6xf32>
  %m = graph.max_pool2d %d {kernel_shape = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, ceil_mode = 0 : i64, layout = "NCHW"} : (tensor<1x2x6x6xf32>) -> tensor<1x2x3x3xf32>
  %f = graph.flatten %m {axis = 1 : i64} : (tensor<1x2x3x3xf32>) -> tensor<1x18xf32>
  %gw = graph.constant dense<1.000000e+00> : tensor<3x18xf32>
  %gb = graph.constant dense<1.000000e+00> : tensor<3xf32>
  %g = graph.gemm %f, %gw, %gb {alpha = 1.000000e+00 : f32, beta = 1.000000e+00 : f32, trans_a = 0 : i64, trans_b = 1 : i64} : (tensor<1x18xf32>, tensor<3x18xf32>, tensor<3xf32>) -> tensor<1x3xf32>
  func.return %g : tensor<1x3xf32>
}

// CHECK-LABEL: func.func @main
// CHECK-SAME:  (%[[X:.+]]: tensor<1x1x6x6xf32>)
// CHECK-NEXT:    %[[XT:.+]] = graph.layout_transform %[[X]] {src_layout = "NCHW", dst_layout = "NHWC"}
// CHECK:         %[[C:.+]] = graph.conv2d %[[XT]], %{{.+}}, %{{.+}} {{.*}}data_layout = "NHWC", kernel_layout = "OHWI"} : (tensor<1x6x6x1xf32>, tensor<2x3x3x1xf32>, tensor<2xf32>) -> tensor<1x6x6x2xf32>
// CHECK-NEXT:    %[[R:.+]] = graph.relu %[[C]]
// CHECK-NEXT:    %[[M:.+]] = graph.max_pool2d %[[R]] {{.*}}layout = "NHWC"}
// CHECK-NEXT:    %[[MT:.+]] = graph.layout_transform %[[M]] {src_layout = "NHWC", dst_layout = "NCHW"}
// CHECK-NEXT:    %[[F:.+]] = graph.flatten %[[MT]]
// CHECK:         %[[D:.+]] = graph.dense %[[F]], %{{.+}} : (tensor<1x18xf32>, tensor<3x18xf32>) -> tensor<1x3xf32>
// CHECK:         %[[B:.+]] = graph.bias_add %[[D]], %{{.+}} {axis = 1 : i64}
// CHECK-NEXT:    func.return %[[B]]
// CHECK-NOT:     graph.batch_norm
// CHECK-NOT:     graph.identity
// CHECK-NOT:     graph.dropout

// Not lowered with the layout option set to NCHW (same cleanup, no layout change).

// NCHW-LABEL: func.func @main
// NCHW-NOT:     graph.layout_transform
// NCHW:         graph.conv2d {{.*}}data_layout = "NCHW", kernel_layout = "OIHW"}
// NCHW-NEXT:    graph.relu
// NCHW-NEXT:    graph.max_pool2d {{.*}}layout = "NCHW"}
// NCHW-NEXT:    graph.flatten
// NCHW-NOT:     graph.batch_norm
