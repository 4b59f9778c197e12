// RUN: mrvl-opt %s -p graph-fold-batch-norm --split-input-file | filecheck %s

// s = scale / sqrt(var + eps) = 4 / sqrt(4) = 2: W' = 0.5 * 2 = 1.0 (0x3F800000),
// b' = (0 - mean) * s + beta = (0 - 1) * 2 + 0.5 = -1.5.

func.func @conv_bn(%x: tensor<1x3x8x8xf32>) -> tensor<1x4x8x8xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<4x3x3x3xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
  %scale = graph.constant dense<4.000000e+00> : tensor<4xf32>
  %beta = graph.constant dense<5.000000e-01> : tensor<4xf32>
  %mean = graph.constant dense<1.000000e+00> : tensor<4xf32>
  %var = graph.constant dense<4.000000e+00> : tensor<4xf32>
  %y = graph.batch_norm %c, %scale, %beta, %mean, %var {epsilon = 0.000000e+00 : f32, layout = "NCHW"} : (tensor<1x4x8x8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
  func.return %y : tensor<1x4x8x8xf32>
}

// CHECK-LABEL: func.func @conv_bn
// CHECK-SAME:  (%[[X:.+]]: tensor<1x3x8x8xf32>)
// CHECK-NEXT:    %[[W:.+]] = graph.constant dense<"0x0000803F"> : tensor<4x3x3x3xf32>
// CHECK-NEXT:    %[[B:.+]] = graph.constant dense<-1.500000e+00> : tensor<4xf32>
// CHECK-NEXT:    %[[Y:.+]] = graph.conv2d %[[X]], %[[W]], %[[B]] {{.*}}data_layout = "NCHW", kernel_layout = "OIHW"}
// CHECK-NOT:     graph.batch_norm
// CHECK:         func.return %[[Y]]

// -----

// Not lowered: a standalone batch-norm, and one after a conv whose result has another user.

func.func @standalone(%x: tensor<1x4x2x2xf32>, %s: tensor<4xf32>) -> tensor<1x4x2x2xf32> {
  %y = graph.batch_norm %x, %s, %s, %s, %s {epsilon = 1.000000e-05 : f32, layout = "NCHW"} : (tensor<1x4x2x2xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x2x2xf32>
  func.return %y : tensor<1x4x2x2xf32>
}

// CHECK-LABEL: func.func @standalone
// CHECK-NEXT:    graph.batch_norm
// CHECK-NEXT:    func.return

func.func @shared_conv(%x: tensor<1x3x8x8xf32>) -> (tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>) {
  %w = graph.constant dense<5.000000e-01> : tensor<4x3x3x3xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x6x6xf32>
  %p = graph.constant dense<1.000000e+00> : tensor<4xf32>
  %y = graph.batch_norm %c, %p, %p, %p, %p {epsilon = 1.000000e-05 : f32, layout = "NCHW"} : (tensor<1x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x4x6x6xf32>
  func.return %y, %c : tensor<1x4x6x6xf32>, tensor<1x4x6x6xf32>
}

// CHECK-LABEL: func.func @shared_conv
// CHECK:         %[[C:.+]] = graph.conv2d
// CHECK:         %[[Y:.+]] = graph.batch_norm %[[C]]
// CHECK-NEXT:    func.return %[[Y]], %[[C]]
