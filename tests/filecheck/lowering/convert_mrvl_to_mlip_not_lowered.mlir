// RUN: mrvl-opt %s -p convert-mrvl-to-mlip --split-input-file | filecheck %s

// Not lowered: CPU sub-graphs and functions without a target stay as they are.

func.func @cpu_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "cpu"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

func.func @main(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %y = func.call @cpu_main_0(%x) : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK:       func.func @cpu_main_0
// CHECK-NEXT:    graph.relu
// CHECK:       func.func @main
// CHECK-NOT:   mlip.model
