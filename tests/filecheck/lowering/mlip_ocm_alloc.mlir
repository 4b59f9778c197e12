// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip' --split-input-file | mrvl-opt --split-input-file -p mlip-ocm-alloc | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip' --split-input-file | mrvl-opt --split-input-file -p mlip-ocm-alloc | mrvl-opt --split-input-file -p mlip-ocm-alloc | filecheck %s --check-prefix=AGAIN
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip' --split-input-file | mrvl-opt --split-input-file -p 'mlip-ocm-alloc{prefetch=false}' | filecheck %s --check-prefix=OFF

// Pages of 16 KiB: weights and bias from the low pages (0, 16384), the two slots of `in`
// and `out` from the top of the range the model needs (6 pages = 98304) downwards. The pass
// rewrites the `mlip.buffer` ops (their `addrs`); the instructions keep their buffer operands.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %b = graph.constant dense<2.500000e-01> : tensor<3xf32>
  %y = mrvl.conv2d %x, %w, %b {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>, tensor<3xf32>) -> tensor<1x4x4x3xf32>
  func.return %y : tensor<1x4x4x3xf32>
}

// CHECK:       mlip.model @tvmgen_mrvl_main_0 attributes {{{.*}}ocm_end = 98304 : i64}
// CHECK:         %w = mlip.buffer "w", size = 12, slots = 1, kind = weights, layer = 0, addrs = [0]{{$}}
// CHECK-NEXT:    %bias = mlip.buffer "bias", size = 12, slots = 1, kind = weights, layer = 0, addrs = [16384]{{$}}
// CHECK-NEXT:    %in = mlip.buffer "in", size = 16, slots = 2, kind = scratch, layer = 0, addrs = [81920, 65536]{{$}}
// CHECK-NEXT:    %out = mlip.buffer "out", size = 24, slots = 2, kind = scratch, layer = 0, addrs = [49152, 32768]{{$}}
// CHECK-NEXT:    mlip.layer @tvmgen_mrvl_main_1
// CHECK-NEXT:      mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:        mlip.dma_load dram_addr = @{{.*}}[0], ocm_addr = %w[0, 0],
// CHECK-NEXT:        mlip.dma_load dram_addr = @{{.*}}[0], ocm_addr = %bias[0, 0],
// CHECK-NEXT:        mlip.dma_load dram_addr = @{{.*}}[0], ocm_addr = %in[0, 0],
// CHECK-NEXT:        mlip.conv in_addr = %in[0, 0], {{.*}}out_addr = %out[0, 0], {{.*}}w_addr = %w[0, 0], bias_addr = %bias[0, 0],
// CHECK-NEXT:        mlip.dma_store dram_addr = @{{.*}}[0], ocm_addr = %out[0, 0],

// Allocating again gives the same addresses.
// AGAIN:       ocm_end = 98304 : i64
// AGAIN:         %in = mlip.buffer "in", size = 16, slots = 2, kind = scratch, layer = 0, addrs = [81920, 65536]{{$}}

// -----

// Weight prefetch: the second conv's weights (`%w_1`) go just above the first conv's
// (page 16384), apart from every buffer of the first layer, so mlip-dma-schedule may load
// them while the first layer runs; the range grows from the largest layer's need (5 pages)
// to the boundary's (both layers' weights and the larger scratch: 6 pages = 98304). With
// `prefetch=false` both layers' weights start at page 0 and the range is 5 pages.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %w2 = graph.constant dense<2.500000e-01> : tensor<3x1x1x3xf32>
  %z = mrvl.conv2d %y, %w2 {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x3xf32>, tensor<3x1x1x3xf32>) -> tensor<1x4x4x3xf32>
  func.return %z : tensor<1x4x4x3xf32>
}

// CHECK:       mlip.model @tvmgen_mrvl_main_0 attributes {{{.*}}ocm_end = 98304 : i64}
// CHECK:         %w = mlip.buffer "w", size = 12, slots = 1, kind = weights, layer = 0, addrs = [0]{{$}}
// CHECK-NEXT:    %in = mlip.buffer "in", size = 16, slots = 2, kind = scratch, layer = 0, addrs = [81920, 65536]{{$}}
// CHECK-NEXT:    %out = mlip.buffer "out", size = 24, slots = 2, kind = scratch, layer = 0, addrs = [49152, 32768]{{$}}
// CHECK:         %w_1 = mlip.buffer "w", size = 18, slots = 1, kind = weights, layer = 1, addrs = [16384]{{$}}
// CHECK-NEXT:    %in_1 = mlip.buffer "in", size = 24, slots = 2, kind = scratch, layer = 1, addrs = [81920, 65536]{{$}}
// CHECK-NEXT:    %out_1 = mlip.buffer "out", size = 24, slots = 2, kind = scratch, layer = 1, addrs = [49152, 32768]{{$}}

// AGAIN:       ocm_end = 98304 : i64
// AGAIN:         %w_1 = mlip.buffer "w", size = 18, slots = 1, kind = weights, layer = 1, addrs = [16384]{{$}}

// OFF:         %in = mlip.buffer "in", size = 16, slots = 2, kind = scratch, layer = 0, addrs = [81920, 65536]{{$}}
// OFF:         mlip.model @tvmgen_mrvl_main_0 attributes {{{.*}}ocm_end = 81920 : i64}
// OFF:           %w = mlip.buffer "w", size = 12, slots = 1, kind = weights, layer = 0, addrs = [0]{{$}}
// OFF:           %w_1 = mlip.buffer "w", size = 18, slots = 1, kind = weights, layer = 1, addrs = [0]{{$}}
// OFF-NEXT:      %in_1 = mlip.buffer "in", size = 24, slots = 2, kind = scratch, layer = 1, addrs = [65536, 49152]{{$}}
