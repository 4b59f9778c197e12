// RUN: mrvl-opt %s -p graph-conv-add-to-bias --split-input-file | filecheck %s

// conv2d + add of a per-channel constant [C,1,1] -> conv2d with bias; then a sub of a
// [1,C,1,1] constant folds into the same bias: 0 + 3 - 1 = 2.

func.func @conv_add_sub(%x: tensor<1x3x4x4xf32>) -> tensor<1x2x4x4xf32> {
  %w = graph.constant dense<1.000000e+00> : tensor<2x3x1x1xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x4x4xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x4x4xf32>
  %k = graph.constant dense<3.000000e+00> : tensor<2x1x1xf32>
  %a = graph.add %k, %c : (tensor<2x1x1xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %one = graph.constant dense<1.000000e+00> : tensor<1x2x1x1xf32>
  %s = graph.sub %a, %one : (tensor<1x2x4x4xf32>, tensor<1x2x1x1xf32>) -> tensor<1x2x4x4xf32>
  func.return %s : tensor<1x2x4x4xf32>
}

// CHECK-LABEL: func.func @conv_add_sub
// CHECK-SAME:  (%[[X:.+]]: tensor<1x3x4x4xf32>)
// CHECK-NEXT:    %[[W:.+]] = graph.constant dense<1.000000e+00> : tensor<2x3x1x1xf32>
// CHECK-NEXT:    %[[B:.+]] = graph.constant dense<2.000000e+00> : tensor<2xf32>
// CHECK-NEXT:    %[[Y:.+]] = graph.conv2d %[[X]], %[[W]], %[[B]] {{.*}} -> tensor<1x2x4x4xf32>
// CHECK-NEXT:    func.return %[[Y]]

// -----

// gemm (trans_b, alpha 2, per-column C, beta 0.5) -> dense + bias_add; a following add of a
// [1, N] constant merges into the bias_add: 0.5 * 4 + 1 = 3.

func.func @gemm_add(%x: tensor<2x3xf32>) -> tensor<2x2xf32> {
  %b = graph.constant dense<1.000000e+00> : tensor<2x3xf32>
  %c = graph.constant dense<4.000000e+00> : tensor<2xf32>
  %g = graph.gemm %x, %b, %c {alpha = 2.000000e+00 : f32, beta = 5.000000e-01 : f32, trans_a = 0 : i64, trans_b = 1 : i64} : (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2xf32>) -> tensor<2x2xf32>
  %k = graph.constant dense<1.000000e+00> : tensor<1x2xf32>
  %a = graph.add %g, %k : (tensor<2x2xf32>, tensor<1x2xf32>) -> tensor<2x2xf32>
  func.return %a : tensor<2x2xf32>
}

// CHECK-LABEL: func.func @gemm_add
// CHECK-SAME:  (%[[X:.+]]: tensor<2x3xf32>)
// CHECK:         %[[W:.+]] = graph.constant dense<2.000000e+00> : tensor<2x3xf32>
// CHECK-NEXT:    %[[D:.+]] = graph.dense %[[X]], %[[W]] : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x2xf32>
// CHECK-NEXT:    %[[B:.+]] = graph.constant dense<3.000000e+00> : tensor<2xf32>
// CHECK-NEXT:    %[[Y:.+]] = graph.bias_add %[[D]], %[[B]] {axis = 1 : i64}
// CHECK-NEXT:    func.return %[[Y]]

// -----

// matmul with a constant 2-D weight -> dense with the transposed weight.

func.func @matmul(%x: tensor<1x2xf32>) -> tensor<1x3xf32> {
  %w = graph.constant dense<[[1.000000e+00, 2.000000e+00, 3.000000e+00], [4.000000e+00, 5.000000e+00, 6.000000e+00]]> : tensor<2x3xf32>
  %y = graph.matmul %x, %w : (tensor<1x2xf32>, tensor<2x3xf32>) -> tensor<1x3xf32>
  func.return %y : tensor<1x3xf32>
}

// CHECK-LABEL: func.func @matmul
// CHECK:         %[[W:.+]] = graph.constant dense<{{\[}}[1.000000e+00, 4.000000e+00], [2.000000e+00, 5.000000e+00], [3.000000e+00, 6.000000e+00]]> : tensor<3x2xf32>
// CHECK-NEXT:    graph.dense %{{.+}}, %[[W]] : (tensor<1x2xf32>, tensor<3x2xf32>) -> tensor<1x3xf32>

// -----

// Not lowered: the constant varies over H and W (not a bias), the other side is not a
// constant, the conv result has a second user, and a matmul of two non-constants.

func.func @not_bias(%x: tensor<1x3x2x2xf32>, %z: tensor<1x2x2x2xf32>, %m: tensor<2x2xf32>) -> (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<2x2xf32>) {
  %w = graph.constant dense<1.000000e+00> : tensor<2x3x1x1xf32>
  %c = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x2x2xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x2x2xf32>
  %c1 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x2x2xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x2x2xf32>
  %k = graph.constant dense<[[1.000000e+00, 2.000000e+00], [3.000000e+00, 4.000000e+00]]> : tensor<2x2xf32>
  %a = graph.add %c1, %k : (tensor<1x2x2x2xf32>, tensor<2x2xf32>) -> tensor<1x2x2x2xf32>
  %one = graph.constant dense<1.000000e+00> : tensor<2x1x1xf32>
  %d = graph.add %c, %one : (tensor<1x2x2x2xf32>, tensor<2x1x1xf32>) -> tensor<1x2x2x2xf32>
  %c2 = graph.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, data_layout = "NCHW", kernel_layout = "OIHW"} : (tensor<1x3x2x2xf32>, tensor<2x3x1x1xf32>) -> tensor<1x2x2x2xf32>
  %b = graph.add %c2, %z : (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %mm = graph.matmul %m, %m : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
  func.return %a, %b, %c, %d, %mm : tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>, tensor<2x2xf32>
}

// CHECK-LABEL: func.func @not_bias
// CHECK:         %[[C:.+]] = graph.conv2d %{{[^,]+}}, %{{[^,]+}} {
// CHECK:         %[[C1:.+]] = graph.conv2d %{{[^,]+}}, %{{[^,]+}} {
// CHECK:         %[[A:.+]] = graph.add %[[C1]], %{{.+}} : (tensor<1x2x2x2xf32>, tensor<2x2xf32>)
// CHECK:         %[[D:.+]] = graph.add %[[C]], %{{.+}} : (tensor<1x2x2x2xf32>, tensor<2x1x1xf32>)
// CHECK:         %[[C2:.+]] = graph.conv2d %{{[^,]+}}, %{{[^,]+}} {
// CHECK:         %[[B:.+]] = graph.add %[[C2]], %{{.+}} : (tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>)
// CHECK:         %[[M:.+]] = graph.matmul
// CHECK-NEXT:    func.return %[[A]], %[[B]], %[[C]], %[[D]], %[[M]]
