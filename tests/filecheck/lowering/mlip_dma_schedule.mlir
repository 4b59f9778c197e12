// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc' --split-input-file | mrvl-opt --split-input-file -p mlip-dma-schedule | filecheck %s

// Two layers on two tiles; each tile streams two blocks per layer.  Tokens: load i pushes
// to compute; compute pops it and pushes to the store; the last store of the first layer
// pushes to the BARRIER, which releases the next layer's first load.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %z = mrvl.maxpool2d %y {kernel_shape = array<i64: 1, 1>, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x3xf32>) -> tensor<1x4x4x3xf32>
  func.return %z : tensor<1x4x4x3xf32>
}

// CHECK:       mlip.stream attributes {section = "main", tile = 0 : i64, queue = "dma_in"}
// CHECK-NEXT:    mlip.dma_load {{.*}}layer = 0{{$}}
// CHECK-NEXT:    mlip.dma_load {{.*}}layer = 0, push_next{{$}}
// CHECK-NEXT:    mlip.dma_load {{.*}}layer = 0, push_next{{$}}
// CHECK-NEXT:    mlip.dma_load {{.*}}layer = 1, pop_next, push_next{{$}}
// CHECK-NEXT:    mlip.dma_load {{.*}}layer = 1, push_next{{$}}
// CHECK-NEXT:  }
// CHECK-NEXT:  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "compute"}
// CHECK-NEXT:    mlip.conv {{.*}}layer = 0, pop_prev, push_next{{$}}
// CHECK-NEXT:    mlip.conv {{.*}}layer = 0, pop_prev, push_next{{$}}
// CHECK-NEXT:    mlip.barrier id = 0, {{.*}}layer = 0, pop_next, push_prev{{$}}
// CHECK-NEXT:    mlip.pool {{.*}}layer = 1, pop_prev, push_next{{$}}
// CHECK-NEXT:    mlip.pool {{.*}}layer = 1, pop_prev, push_next{{$}}
// CHECK-NEXT:  }
// CHECK-NEXT:  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "dma_out"}
// CHECK-NEXT:    mlip.dma_store {{.*}}layer = 0, pop_prev{{$}}
// CHECK-NEXT:    mlip.dma_store {{.*}}layer = 0, pop_prev, push_prev{{$}}
// CHECK-NEXT:    mlip.dma_store {{.*}}layer = 1, pop_prev{{$}}
// CHECK-NEXT:    mlip.dma_store {{.*}}layer = 1, pop_prev{{$}}
// CHECK-NEXT:  }
// CHECK:       mlip.stream attributes {section = "main", tile = 1 : i64, queue = "compute"}
// CHECK:         mlip.barrier id = 0,

// -----

// Not lowered: a CPU sub-graph (no mlip.model) goes through unchanged.

func.func @cpu_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "cpu"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @cpu_main_0
// CHECK-NEXT:    graph.relu
// CHECK-NOT:     mlip.
