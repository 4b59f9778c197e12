// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2 resident=true},convert-mrvl-to-mlip,mlip-residency,mlip-ocm-alloc' | mrvl-opt -p mlip-dma-schedule | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2 resident=true},convert-mrvl-to-mlip,mlip-residency,mlip-ocm-alloc' | mrvl-opt -p 'mlip-dma-schedule{prefetch=false}' | filecheck %s --check-prefix=OFF

// Weight prefetch across a layer without weights: conv, a 1x1 max pool (no weights), conv.
// mlip-ocm-alloc places the second conv's weights apart from the buffers of both layers
// before it, and each tile loads them while the first conv runs: before the barrier that
// ends the first conv (id = 0), not only before the pool's (id = 1). The load pops and
// pushes no token. With `prefetch=false` it follows the pool's barrier.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<8x1x1x8xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x8x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x8x8x8xf32>
  %p = mrvl.maxpool2d %y {kernel_shape = array<i64: 1, 1>, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
  %w2 = graph.constant dense<2.500000e-01> : tensor<8x1x1x8xf32>
  %z = mrvl.conv2d %p, %w2 {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_3", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x8x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x8x8x8xf32>
  func.return %z : tensor<1x8x8x8xf32>
}

// CHECK:         %w = mlip.buffer "w", size = 128, slots = 1, kind = weights, layer = 0, addrs = [0]{{$}}
// CHECK:         %w_1 = mlip.buffer "w", size = 128, slots = 1, kind = weights, layer = 2, addrs = [950272]{{$}}
// CHECK:         mlip.section attributes {section = "main"} {
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[0], {{.*}}layer = 0, tile = 0{{$}}
// CHECK:           mlip.dma_load dram_addr = @tvmgen_mrvl_main_3_w[0], ocm_addr = %w_1[0, 0], {{.*}}layer = 2, tile = 0{{$}}
// CHECK-NEXT:      mlip.barrier id = 0, {{.*}}layer = 0, tile = 0,
// CHECK:           mlip.dma_load dram_addr = @tvmgen_mrvl_main_3_w[0], ocm_addr = %w_1[0, 0], {{.*}}layer = 2, tile = 1{{$}}
// CHECK-NEXT:      mlip.barrier id = 0, {{.*}}layer = 0, tile = 1,
// CHECK:           mlip.barrier id = 1, {{.*}}layer = 1, tile = 0,
// CHECK-NOT:       @tvmgen_mrvl_main_3_w
// CHECK:           mlip.conv {{.*}}w_addr = %w_1[0, 0], {{.*}}layer = 2, tile = 0,

// OFF:           mlip.barrier id = 0, {{.*}}layer = 0, tile = 0,
// OFF-NOT:       @tvmgen_mrvl_main_3_w
// OFF:           mlip.barrier id = 1, {{.*}}layer = 1, tile = 1,
// OFF-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_3_w[0], ocm_addr = %w_1[0, 0], {{.*}}layer = 2, tile = 0, pop_next = %{{[0-9]+}}, push_next{{$}}
