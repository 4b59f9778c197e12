// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc' --split-input-file | mrvl-opt --split-input-file -p mlip-dma-schedule | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' --split-input-file | mrvl-opt --split-input-file -t mlip-asm | filecheck %s --check-prefix=ASM
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc' --split-input-file | mrvl-opt --split-input-file -p 'mlip-dma-schedule{prefetch=false}' | filecheck %s --check-prefix=OFF

// Two layers on two tiles; each tile streams two blocks per layer. The instructions move
// into one `mlip.section` block (layer by layer, tile by tile, block by block) and every
// dependency becomes a `!mlip.token` value: load i pushes one to compute (its result),
// compute pops it (`pop_prev = %token`) and pushes one to the store; the last store of the
// first layer pushes to the BARRIER, whose token releases the next layer's first load.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %z = mrvl.maxpool2d %y {kernel_shape = array<i64: 1, 1>, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x3xf32>) -> tensor<1x4x4x3xf32>
  func.return %z : tensor<1x4x4x3xf32>
}

// CHECK:       mlip.layer @tvmgen_mrvl_main_1 attributes {{{.*}}blocks = 4 : i64} {
// CHECK-NEXT:    }
// CHECK:         mlip.section attributes {section = "main"} {
// CHECK-NEXT:      mlip.dma_load {{.*}}layer = 0, tile = 0{{$}}
// CHECK-NEXT:      %[[L0:[0-9]+]] = mlip.dma_load {{.*}}layer = 0, tile = 0, push_next{{$}}
// CHECK-NEXT:      %[[C0:[0-9]+]] = mlip.conv {{.*}}layer = 0, tile = 0, pop_prev = %[[L0]], push_next{{$}}
// CHECK-NEXT:      mlip.dma_store {{.*}}layer = 0, tile = 0, pop_prev = %[[C0]]{{$}}
// CHECK-NEXT:      %[[L1:[0-9]+]] = mlip.dma_load {{.*}}layer = 0, tile = 0, push_next{{$}}
// CHECK-NEXT:      %[[C1:[0-9]+]] = mlip.conv {{.*}}layer = 0, tile = 0, pop_prev = %[[L1]], push_next{{$}}
// CHECK-NEXT:      %[[S1:[0-9]+]] = mlip.dma_store {{.*}}layer = 0, tile = 0, pop_prev = %[[C1]], push_prev{{$}}
// CHECK-NEXT:      %[[B0:[0-9]+]] = mlip.barrier id = 0, src = f16, dst = f16, layer = 0, tile = 0, pop_next = %[[S1]], push_prev{{$}}
// CHECK-NEXT:      mlip.dma_load {{.*}}layer = 0, tile = 1{{$}}
// CHECK:           %[[B1:[0-9]+]] = mlip.barrier id = 0, {{.*}}tile = 1, pop_next = %{{[0-9]+}}, push_prev{{$}}
// CHECK-NEXT:      %[[L2:[0-9]+]] = mlip.dma_load {{.*}}layer = 1, tile = 0, pop_next = %[[B0]], push_next{{$}}
// CHECK-NEXT:      %{{[0-9]+}} = mlip.pool {{.*}}layer = 1, tile = 0, pop_prev = %[[L2]], push_next{{$}}
// CHECK:           mlip.dma_load {{.*}}layer = 1, tile = 1, pop_next = %[[B1]], push_next{{$}}

// The streams of the binary: each (tile, queue)'s ops in section order.
// ASM:       main.tile0.dma_in:
// ASM-NEXT:    dma_load {{.*}}layer = 0, tile = 0{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 0, tile = 0, push_next{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 0, tile = 0, push_next{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 1, tile = 0, pop_next = %{{[0-9]+}}, push_next{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 1, tile = 0, push_next{{$}}
// ASM-NEXT:  main.tile0.compute:
// ASM-NEXT:    conv {{.*}}pop_prev = %{{[0-9]+}}, push_next{{$}}
// ASM-NEXT:    conv {{.*}}pop_prev = %{{[0-9]+}}, push_next{{$}}
// ASM-NEXT:    barrier id = 0, {{.*}}pop_next = %{{[0-9]+}}, push_prev{{$}}
// ASM-NEXT:    pool {{.*}}pop_prev = %{{[0-9]+}}, push_next{{$}}
// ASM-NEXT:    pool {{.*}}pop_prev = %{{[0-9]+}}, push_next{{$}}
// ASM-NEXT:  main.tile0.dma_out:
// ASM-NEXT:    dma_store {{.*}}layer = 0, tile = 0, pop_prev = %{{[0-9]+}}{{$}}
// ASM-NEXT:    dma_store {{.*}}layer = 0, tile = 0, pop_prev = %{{[0-9]+}}, push_prev{{$}}
// ASM-NEXT:    dma_store {{.*}}layer = 1, tile = 0, pop_prev = %{{[0-9]+}}{{$}}
// ASM-NEXT:    dma_store {{.*}}layer = 1, tile = 0, pop_prev = %{{[0-9]+}}{{$}}
// ASM-NEXT:  main.tile1.dma_in:

// -----

// Weight prefetch: two convs. mlip-ocm-alloc put the second conv's weights (%w_1, page
// 16384) apart from every buffer of the first, so each tile loads them right after its own
// loads of the first layer, before the BARRIER: that load pops and pushes no token. The
// second layer's first load still pops the barrier's token and pushes to compute; program
// order on DMA_IN puts the weight load before it, so the first conv of layer 1 waits for
// both. With `prefetch=false` the weight load follows the barrier, as the first load of
// layer 1.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %w2 = graph.constant dense<2.500000e-01> : tensor<3x1x1x3xf32>
  %z = mrvl.conv2d %y, %w2 {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x3xf32>, tensor<3x1x1x3xf32>) -> tensor<1x4x4x3xf32>
  func.return %z : tensor<1x4x4x3xf32>
}

// CHECK:         %w_1 = mlip.buffer "w", size = 18, slots = 1, kind = weights, layer = 1, addrs = [16384]{{$}}
// CHECK:         mlip.section attributes {section = "main"} {
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[0], ocm_addr = %w[0, 0], {{.*}}layer = 0, tile = 0{{$}}
// CHECK:           %[[S:[0-9]+]] = mlip.dma_store {{.*}}layer = 0, tile = 0, pop_prev = %{{[0-9]+}}, push_prev{{$}}
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], ocm_addr = %w_1[0, 0], {{.*}}layer = 1, tile = 0{{$}}
// CHECK-NEXT:      %[[B0:[0-9]+]] = mlip.barrier id = 0, {{.*}}layer = 0, tile = 0, pop_next = %[[S]], push_prev{{$}}
// CHECK:           mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], ocm_addr = %w_1[0, 0], {{.*}}layer = 1, tile = 1{{$}}
// CHECK-NEXT:      mlip.barrier id = 0, {{.*}}layer = 0, tile = 1,
// CHECK-NEXT:      %[[L:[0-9]+]] = mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_y[0], ocm_addr = %in_1[0, 0], {{.*}}layer = 1, tile = 0, pop_next = %[[B0]], push_next{{$}}
// CHECK-NEXT:      mlip.conv {{.*}}w_addr = %w_1[0, 0], {{.*}}layer = 1, tile = 0, pop_prev = %[[L]], push_next{{$}}

// OFF:         %w_1 = mlip.buffer "w", size = 18, slots = 1, kind = weights, layer = 1, addrs = [16384]{{$}}
// OFF:         mlip.section attributes {section = "main"} {
// OFF:           %[[B0:[0-9]+]] = mlip.barrier id = 0, {{.*}}layer = 0, tile = 0,
// OFF-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[0], {{.*}}layer = 0, tile = 1{{$}}
// OFF:           mlip.barrier id = 0, {{.*}}layer = 0, tile = 1,
// OFF-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], ocm_addr = %w_1[0, 0], {{.*}}layer = 1, tile = 0, pop_next = %[[B0]]{{$}}
// OFF-NEXT:      %[[L:[0-9]+]] = mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_y[0], {{.*}}layer = 1, tile = 0, push_next{{$}}
// OFF-NEXT:      mlip.conv {{.*}}layer = 1, tile = 0, pop_prev = %[[L]], push_next{{$}}

// The tile-0 DMA_IN stream of the binary: the second layer's weights follow the first
// layer's loads, then the load that waits for the barrier.
// ASM:       main.tile0.dma_in:
// ASM-NEXT:    dma_load dram_addr = @tvmgen_mrvl_main_1_w[0], {{.*}}layer = 0, tile = 0{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 0, tile = 0, push_next{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 0, tile = 0, push_next{{$}}
// ASM-NEXT:    dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], {{.*}}layer = 1, tile = 0{{$}}
// ASM-NEXT:    dma_load dram_addr = @tvmgen_mrvl_main_1_y[0], {{.*}}layer = 1, tile = 0, pop_next = %{{[0-9]+}}, push_next{{$}}
// ASM-NEXT:    dma_load {{.*}}layer = 1, tile = 0, push_next{{$}}
// ASM-NEXT:  main.tile0.compute:

// -----

// Not lowered: a CPU sub-graph (no mlip.model) goes through unchanged.

func.func @cpu_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "cpu"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @cpu_main_0
// CHECK-NEXT:    graph.relu
// CHECK-NOT:     mlip.
