// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc' | mrvl-opt -p 'mlip-dma-schedule{broadcast="all"}' | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc' | mrvl-opt -p 'mlip-dma-schedule{broadcast="none"}' | filecheck %s --check-prefix=NONE

// Two convs split by rows over two tiles: both tiles need all of the second conv's weights
// (and bias). With broadcast=all each weights-kind load is made once, by one tile (the
// loads are small: one piece each; the weights go to tile 0, the bias to tile 1, the one
// with fewer bytes), before the barrier; the loading tile's compute NOP relays the load's
// token (and the last store's) to a TILE_COPY into the other tile's same slot, and the
// copy's token to the BARRIER. With broadcast=none every tile loads them.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x8x8x16xf32>) -> tensor<1x8x8x16xf32> attributes {mrvl.target = "accelerator"} {
  %w1 = graph.constant dense<5.000000e-01> : tensor<16x1x1x16xf32>
  %w2 = graph.constant dense<2.500000e-01> : tensor<16x1x1x16xf32>
  %b2 = graph.constant dense<1.000000e+00> : tensor<16xf32>
  %y = mrvl.conv2d %x, %w1 {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x8x16xf32>, tensor<16x1x1x16xf32>) -> tensor<1x8x8x16xf32>
  %z = mrvl.conv2d %y, %w2, %b2 {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x8x16xf32>, tensor<16x1x1x16xf32>, tensor<16xf32>) -> tensor<1x8x8x16xf32>
  func.return %z : tensor<1x8x8x16xf32>
}

// CHECK:         mlip.section attributes {section = "main"} {
// CHECK:           %[[S0:[0-9]+]] = mlip.dma_store {{.*}}layer = 0, tile = 0, pop_prev = %{{[0-9]+}}, push_prev{{$}}
// CHECK-NEXT:      %[[P0:[0-9]+]] = mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], ocm_addr = %[[W:w_1]][0, 0], {{.*}}layer = 1, tile = 0, push_next{{$}}
// CHECK-NEXT:      %[[N0:[0-9]+]] = mlip.nop {{.*}}layer = 0, tile = 0, queue = compute, pop_prev = %[[P0]], pop_next = %[[S0]], push_next{{$}}
// CHECK-NEXT:      %[[T0:[0-9]+]] = mlip.tile_copy src_addr = %[[W]][0, 0], dst_addr = %[[W]][0, 0], dst_tile_mask = 2, {{.*}}layer = 1, tile = 0, pop_prev = %[[N0]], push_prev{{$}}
// CHECK-NEXT:      mlip.barrier id = 0, {{.*}}layer = 0, tile = 0, pop_next = %[[T0]], push_prev{{$}}
// CHECK:           %[[S1:[0-9]+]] = mlip.dma_store {{.*}}layer = 0, tile = 1, pop_prev = %{{[0-9]+}}, push_prev{{$}}
// CHECK-NEXT:      %[[P1:[0-9]+]] = mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_b[0], ocm_addr = %bias[0, 0], {{.*}}layer = 1, tile = 1, push_next{{$}}
// CHECK-NEXT:      %[[N1:[0-9]+]] = mlip.nop {{.*}}layer = 0, tile = 1, queue = compute, pop_prev = %[[P1]], pop_next = %[[S1]], push_next{{$}}
// CHECK-NEXT:      %[[T1:[0-9]+]] = mlip.tile_copy src_addr = %bias[0, 0], dst_addr = %bias[0, 0], dst_tile_mask = 1, {{.*}}layer = 1, tile = 1, pop_prev = %[[N1]], push_prev{{$}}
// CHECK-NEXT:      mlip.barrier id = 0, {{.*}}layer = 0, tile = 1, pop_next = %[[T1]], push_prev{{$}}
// CHECK-NOT:       mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_

// NONE:            mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], {{.*}}layer = 1, tile = 0{{$}}
// NONE:            mlip.barrier id = 0, {{.*}}layer = 0, tile = 0, pop_next
// NONE:            mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0], {{.*}}layer = 1, tile = 1{{$}}
// NONE:            mlip.barrier id = 0, {{.*}}layer = 0, tile = 1, pop_next
// NONE-NOT:        mlip.tile_copy src_addr = %w
