// RUN: mrvl-opt %s -p graph-fold-constants --split-input-file | filecheck %s
// RUN: mrvl-opt %s -p "graph-fold-constants{max-elements=3}" --split-input-file | filecheck %s --check-prefix=CAP

// A chain of constant-only ops (transpose, add, reshape, relu) becomes one constant; the
// op with a non-constant operand stays.

func.func @fold(%x: tensor<4xf32>) -> tensor<4xf32> {
  %a = graph.constant dense<[[1.000000e+00, -2.000000e+00], [3.000000e+00, -4.000000e+00]]> : tensor<2x2xf32>
  %t = graph.transpose %a {perm = array<i64: 1, 0>} : (tensor<2x2xf32>) -> tensor<2x2xf32>
  %s = graph.add %t, %t : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
  %r = graph.reshape %s : (tensor<2x2xf32>) -> tensor<4xf32>
  %q = graph.relu %r : (tensor<4xf32>) -> tensor<4xf32>
  %y = graph.mul %x, %q : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %y : tensor<4xf32>
}

// CHECK-LABEL: func.func @fold
// CHECK-SAME:  (%[[X:.+]]: tensor<4xf32>)
// CHECK-NEXT:    %[[Q:.+]] = graph.constant dense<[2.000000e+00, 6.000000e+00, 0.000000e+00, 0.000000e+00]> : tensor<4xf32>
// CHECK-NEXT:    %[[Y:.+]] = graph.mul %[[X]], %[[Q]]
// CHECK-NEXT:    func.return %[[Y]]

// -----

// With max-elements=3 an op whose result (9 elements) is bigger than both the cap and its
// operands (3 + 3) is not folded; a transpose (no growth) still is.

func.func @cap() -> (tensor<3x3xf32>, tensor<3x1xf32>) {
  %a = graph.constant dense<[[1.000000e+00], [2.000000e+00], [3.000000e+00]]> : tensor<3x1xf32>
  %b = graph.constant dense<[[1.000000e+00, 2.000000e+00, 3.000000e+00]]> : tensor<1x3xf32>
  %s = graph.add %a, %b : (tensor<3x1xf32>, tensor<1x3xf32>) -> tensor<3x3xf32>
  %t = graph.transpose %b {perm = array<i64: 1, 0>} : (tensor<1x3xf32>) -> tensor<3x1xf32>
  func.return %s, %t : tensor<3x3xf32>, tensor<3x1xf32>
}

// CHECK-LABEL: func.func @cap
// CHECK-NEXT:    %[[S:.+]] = graph.constant dense<{{\[}}[2.000000e+00, 3.000000e+00, 4.000000e+00], [3.000000e+00, 4.000000e+00, 5.000000e+00], [4.000000e+00, 5.000000e+00, 6.000000e+00]]> : tensor<3x3xf32>
// CHECK-NEXT:    %[[T:.+]] = graph.constant dense<{{\[}}[1.000000e+00], [2.000000e+00], [3.000000e+00]]> : tensor<3x1xf32>
// CHECK-NEXT:    func.return %[[S]], %[[T]]

// CAP-LABEL: func.func @cap
// CAP:         graph.add
// CAP-NOT:     graph.transpose
// CAP:         func.return

// -----

// Not folded: graph.onnx (runs on onnxruntime, never folded here) and ops with a
// non-constant operand.

func.func @keep(%x: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>) {
  %a = graph.constant dense<[1.000000e+00, 2.000000e+00]> : tensor<2xf32>
  %n = graph.onnx %a {op_type = "Neg", domain = "", opset = 17 : i64, attrs = {}} : (tensor<2xf32>) -> tensor<2xf32>
  %s = graph.sub %a, %x : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  func.return %n, %s : tensor<2xf32>, tensor<2xf32>
}

// CHECK-LABEL: func.func @keep
// CHECK-NEXT:    graph.constant
// CHECK-NEXT:    graph.onnx
// CHECK-NEXT:    graph.sub
// CHECK-NEXT:    func.return
