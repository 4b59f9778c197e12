// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip' --split-input-file | mrvl-opt --split-input-file -p mlip-ocm-alloc | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip' --split-input-file | mrvl-opt --split-input-file -p mlip-ocm-alloc | mrvl-opt --split-input-file -p mlip-ocm-alloc | filecheck %s --check-prefix=AGAIN

// Pages of 16 KiB: weights and bias from the low pages (0, 16384), the two slots of `in`
// and `out` from the top of the range the model needs (6 pages = 98304) downwards.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %b = graph.constant dense<2.500000e-01> : tensor<3xf32>
  %y = mrvl.conv2d %x, %w, %b {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>, tensor<3xf32>) -> tensor<1x4x4x3xf32>
  func.return %y : tensor<1x4x4x3xf32>
}

// CHECK:       mlip.model @tvmgen_mrvl_main_0 attributes {{{.*}}ocm_end = 98304 : i64}
// CHECK:         mlip.buffer @w {size = 12 : i64, slots = 1 : i64, kind = "weights", addrs = array<i64: 0>}
// CHECK-NEXT:    mlip.buffer @bias {size = 12 : i64, slots = 1 : i64, kind = "weights", addrs = array<i64: 16384>}
// CHECK-NEXT:    mlip.buffer @in {size = 16 : i64, slots = 2 : i64, kind = "scratch", addrs = array<i64: 81920, 65536>}
// CHECK-NEXT:    mlip.buffer @out {size = 24 : i64, slots = 2 : i64, kind = "scratch", addrs = array<i64: 49152, 32768>}
// CHECK-NEXT:    mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @{{.*}}[0], ocm_addr = 0,
// CHECK-NEXT:      mlip.dma_load dram_addr = @{{.*}}[0], ocm_addr = 16384,
// CHECK-NEXT:      mlip.dma_load dram_addr = @{{.*}}[0], ocm_addr = 81920,
// CHECK-NEXT:      mlip.conv in_addr = 81920, {{.*}}out_addr = 49152, {{.*}}w_addr = 0, bias_addr = 16384,
// CHECK-NEXT:      mlip.dma_store dram_addr = @{{.*}}[0], ocm_addr = 49152,
// CHECK:         mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @{{.*}}[16], ocm_addr = 65536,
// CHECK-NEXT:      mlip.conv in_addr = 65536, {{.*}}out_addr = 32768,
// CHECK-NOT:     @in[

// Allocating again is a no-op (addresses are final).
// AGAIN:       ocm_end = 98304 : i64
// AGAIN:         mlip.conv in_addr = 81920, {{.*}}out_addr = 49152,

// -----

// Not lowered: a CPU sub-graph (no mlip.model) goes through unchanged.

func.func @cpu_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "cpu"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @cpu_main_0
// CHECK-NEXT:    graph.relu
// CHECK-NOT:     mlip.
