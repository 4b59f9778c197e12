// RUN: mrvl-opt %s -p mrvl-partition --split-input-file | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-partition{max-layers=1}' --split-input-file | filecheck %s --check-prefix=MAX
// RUN: mrvl-opt %s -p 'mrvl-partition{mode=rfc-first-revision}' --split-input-file | filecheck %s --check-prefix=RFC
// RUN: mrvl-opt %s -p 'mrvl-partition{require-compute=false}' --split-input-file | filecheck %s --check-prefix=NOREQ

// conv -> (CPU tanh) -> fc: default gives accelerator, CPU, accelerator sub-graphs; the
// second one takes an intermediate tensor.

func.func @main(%x: tensor<1x2x2x1xf32>) -> tensor<1x2xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<4x1x1x1xf32>
  %c = mrvl.conv2d %x, %w {layer_name = "tvmgen_mrvl_main_0", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "relu"} : (tensor<1x2x2x1xf32>, tensor<4x1x1x1xf32>) -> tensor<1x2x2x4xf32>
  %t = graph.tanh %c {mrvl.cpu_reason = "graph.tanh: not an accelerator op"} : (tensor<1x2x2x4xf32>) -> tensor<1x2x2x4xf32>
  %f = mrvl.batch_flatten %t {layer_name = "tvmgen_mrvl_main_1"} : (tensor<1x2x2x4xf32>) -> tensor<1x16xf32>
  %fw = graph.constant dense<2.500000e-01> : tensor<2x16xf32>
  %y = mrvl.fc %f, %fw {layer_name = "tvmgen_mrvl_main_2", activation = "none"} : (tensor<1x16xf32>, tensor<2x16xf32>) -> tensor<1x2xf32>
  func.return %y : tensor<1x2xf32>
}

// CHECK-LABEL: func.func @main
// CHECK-SAME:  (%[[X:.+]]: tensor<1x2x2x1xf32>)
// CHECK-NEXT:    %[[A:.+]] = func.call @tvmgen_mrvl_main_0(%[[X]])
// CHECK-NEXT:    %[[B:.+]] = func.call @cpu_main_0(%[[A]])
// CHECK-NEXT:    %[[C:.+]] = func.call @tvmgen_mrvl_main_1(%[[B]])
// CHECK-NEXT:    func.return %[[C]]
// CHECK:       func.func @tvmgen_mrvl_main_0({{.*}}) -> tensor<1x2x2x4xf32> attributes {mrvl.target = "accelerator"}
// CHECK-NEXT:    graph.constant
// CHECK-NEXT:    mrvl.conv2d
// CHECK:       func.func @cpu_main_0({{.*}}) -> tensor<1x2x2x4xf32> attributes {mrvl.target = "cpu"}
// CHECK-NEXT:    graph.tanh
// CHECK:       func.func @tvmgen_mrvl_main_1({{.*}}) -> tensor<1x2xf32> attributes {mrvl.target = "accelerator"}
// CHECK-NEXT:    mrvl.batch_flatten %{{.+}} {layer_name = "tvmgen_mrvl_main_1"}
// CHECK-NEXT:    graph.constant
// CHECK-NEXT:    mrvl.fc

// max-layers=1: only the conv stays; the rest is expanded back into graph ops.
// MAX-LABEL: func.func @main
// MAX-NEXT:    func.call @tvmgen_mrvl_main_0
// MAX-NEXT:    func.call @cpu_main_0
// MAX-NEXT:    func.return
// MAX:       func.func @cpu_main_0
// MAX-NEXT:    graph.tanh
// MAX-NEXT:    graph.reshape %{{.+}} {mrvl.cpu_reason = "beyond max-layers 1", mrvl.layer = "tvmgen_mrvl_main_1"}
// MAX-NEXT:    graph.constant
// MAX-NEXT:    graph.dense {{.*}}mrvl.cpu_reason = "beyond max-layers 1", mrvl.layer = "tvmgen_mrvl_main_2"

// rfc-first-revision: one accelerator sub-graph fed by model inputs, one CPU sub-graph.
// RFC-LABEL: func.func @main
// RFC-NEXT:    func.call @tvmgen_mrvl_main_0
// RFC-NEXT:    func.call @cpu_main_0
// RFC-NEXT:    func.return
// RFC:       func.func @cpu_main_0
// RFC:         graph.reshape {{.*}}mrvl.cpu_reason = "rfc-first-revision: the accelerator sub-graph may only use model inputs, and this layer depends on a CPU result"

// NOREQ-LABEL: func.func @main
// NOREQ-NEXT:    func.call @tvmgen_mrvl_main_0
// NOREQ-NEXT:    func.call @cpu_main_0
// NOREQ-NEXT:    func.call @tvmgen_mrvl_main_1

// -----

// Not lowered to an accelerator sub-graph: a region without conv2d or dense (require-compute),
// unless require-compute=false.

func.func @main(%x: tensor<1x2x2x4xf32>) -> tensor<1x4xf32> {
  %g = mrvl.global_avgpool2d %x {layer_name = "tvmgen_mrvl_main_0"} : (tensor<1x2x2x4xf32>) -> tensor<1x1x1x4xf32>
  %f = mrvl.batch_flatten %g {layer_name = "tvmgen_mrvl_main_1"} : (tensor<1x1x1x4xf32>) -> tensor<1x4xf32>
  func.return %f : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @main
// CHECK-NEXT:    func.call @cpu_main_0
// CHECK-NEXT:    func.return
// CHECK:       func.func @cpu_main_0
// CHECK-NEXT:    graph.global_avg_pool2d {{.*}}mrvl.cpu_reason = "accelerator region without conv2d or dense (require-compute)", mrvl.layer = "tvmgen_mrvl_main_0"
// CHECK-NEXT:    graph.reshape
// CHECK-NOT:   mrvl.target = "accelerator"

// NOREQ-LABEL: func.func @main
// NOREQ-NEXT:    func.call @tvmgen_mrvl_main_0
// NOREQ-NEXT:    func.return
