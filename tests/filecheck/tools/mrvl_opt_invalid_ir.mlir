// Invalid IR (without --verify-diagnostics) gives the verifier's message and the failing op in
// context, exit status 2, and no Python traceback.
// RUN: not mrvl-opt %s 2>&1 | filecheck %s

// CHECK: mrvl-opt: error: expected result type tensor<1x3x8x8xf32>, got tensor<1x3x8x9xf32>
// CHECK: "graph.relu"(%0) : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x9xf32>
// CHECK-NEXT: ^^^
// CHECK-NOT: Traceback

func.func @main(%0: tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32> {
  %1 = graph.relu %0 : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x9xf32>
  func.return %1 : tensor<1x3x8x9xf32>
}
