// RUN: mrvl-opt %s -p graph-cancel-transposes --split-input-file | filecheck %s

// An identity transpose, a transpose pair, a layout_transform pair and a transpose that
// undoes a layout_transform all disappear.

func.func @cancel(%x: tensor<1x2x3x4xf32>) -> (tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>) {
  %i = graph.transpose %x {perm = array<i64: 0, 1, 2, 3>} : (tensor<1x2x3x4xf32>) -> tensor<1x2x3x4xf32>
  %t1 = graph.transpose %x {perm = array<i64: 3, 0, 2, 1>} : (tensor<1x2x3x4xf32>) -> tensor<4x1x3x2xf32>
  %t2 = graph.transpose %t1 {perm = array<i64: 1, 3, 2, 0>} : (tensor<4x1x3x2xf32>) -> tensor<1x2x3x4xf32>
  %l1 = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x3x4xf32>) -> tensor<1x3x4x2xf32>
  %l2 = graph.layout_transform %l1 {src_layout = "NHWC", dst_layout = "NCHW"} : (tensor<1x3x4x2xf32>) -> tensor<1x2x3x4xf32>
  %l3 = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x3x4xf32>) -> tensor<1x3x4x2xf32>
  %t3 = graph.transpose %l3 {perm = array<i64: 0, 3, 1, 2>} : (tensor<1x3x4x2xf32>) -> tensor<1x2x3x4xf32>
  func.return %i, %t2, %l2, %t3 : tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>
}

// CHECK-LABEL: func.func @cancel
// CHECK-SAME:  (%[[X:.+]]: tensor<1x2x3x4xf32>)
// CHECK-NEXT:    func.return %[[X]], %[[X]], %[[X]], %[[X]]

// -----

// Chains that do not cancel become one op: layout transforms compose into one layout
// transform, a transpose after a layout transform into one transpose.

func.func @compose(%x: tensor<1x2x3x4xf32>) -> (tensor<1x3x4x2xf32>, tensor<2x3x4x1xf32>) {
  %a = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NWCH"} : (tensor<1x2x3x4xf32>) -> tensor<1x4x2x3xf32>
  %b = graph.layout_transform %a {src_layout = "NWCH", dst_layout = "NHWC"} : (tensor<1x4x2x3xf32>) -> tensor<1x3x4x2xf32>
  %c = graph.layout_transform %x {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x3x4xf32>) -> tensor<1x3x4x2xf32>
  %d = graph.transpose %c {perm = array<i64: 3, 1, 2, 0>} : (tensor<1x3x4x2xf32>) -> tensor<2x3x4x1xf32>
  func.return %b, %d : tensor<1x3x4x2xf32>, tensor<2x3x4x1xf32>
}

// CHECK-LABEL: func.func @compose
// CHECK-SAME:  (%[[X:.+]]: tensor<1x2x3x4xf32>)
// CHECK-NEXT:    %[[B:.+]] = graph.layout_transform %[[X]] {src_layout = "NCHW", dst_layout = "NHWC"} : (tensor<1x2x3x4xf32>) -> tensor<1x3x4x2xf32>
// CHECK-NEXT:    %[[D:.+]] = graph.transpose %[[X]] {perm = array<i64: 1, 2, 3, 0>} : (tensor<1x2x3x4xf32>) -> tensor<2x3x4x1xf32>
// CHECK-NEXT:    func.return %[[B]], %[[D]]

// -----

// Not lowered: a lone non-identity transpose, and a transpose whose input is not a
// transpose (a relu in between).

func.func @keep(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %t = graph.transpose %x {perm = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  %r = graph.relu %t : (tensor<3x2xf32>) -> tensor<3x2xf32>
  %u = graph.transpose %r {perm = array<i64: 1, 0>} : (tensor<3x2xf32>) -> tensor<2x3xf32>
  func.return %u : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @keep
// CHECK-NEXT:    %[[T:.+]] = graph.transpose %{{.+}} {perm = array<i64: 1, 0>}
// CHECK-NEXT:    %[[R:.+]] = graph.relu %[[T]]
// CHECK-NEXT:    %[[U:.+]] = graph.transpose %[[R]] {perm = array<i64: 1, 0>}
// CHECK-NEXT:    func.return %[[U]]
