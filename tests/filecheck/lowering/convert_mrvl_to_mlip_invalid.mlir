// RUN: not mrvl-opt %s -p convert-mrvl-to-mlip 2>&1 | filecheck %s

// An accelerator sub-graph holding anything but mrvl layers and graph.constant weights is a
// one-line CompileError, not a traceback.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "accelerator"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK: mrvl-opt: error: @tvmgen_mrvl_main_0: graph.relu cannot be in an accelerator sub-graph
// CHECK-NOT: Traceback
