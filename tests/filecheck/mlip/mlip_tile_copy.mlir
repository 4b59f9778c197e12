// RUN: mrvl-opt %s | mrvl-opt | filecheck %s
// RUN: mrvl-opt %s -t mlip-asm | filecheck %s --check-prefix=ASM
// RUN: mrvl-opt %s -t mlip-bin | filecheck %s --check-prefix=BIN

// TILE_COPY (docs/isa.md section 3): tile 0 loads x and copies it into tile 1's OCM (bit 1
// of dst_tile_mask) on its DMA_OUT queue, with the DMA_STORE's token path (compute
// push_next -> tile_copy pop_prev, tile_copy push_prev -> barrier pop_next); tile 1 reads
// the copied range only after the barrier and stores it to y.

mlip.model @m attributes {num_tiles = 2 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = ["x"], outputs = ["y"], ocm_end = 32768 : i64} {
  mlip.tensor @x {region = "input", shape = array<i64: 1, 2, 2, 16>, dtype = "f16"}
  mlip.tensor @y {region = "output", shape = array<i64: 1, 2, 2, 16>, dtype = "f16"}
  %in = mlip.buffer "in", size = 128, slots = 1, kind = scratch, layer = 0, addrs = [0]
  %recv = mlip.buffer "recv", size = 256, slots = 1, kind = scratch, layer = 0, addrs = [16384]
  mlip.layer @move attributes {kind = "copy", index = 0 : i64, macs = 0 : i64, split = "rows", blocks = 1 : i64} {
  }
  mlip.section attributes {section = "main"} {
    %0 = mlip.dma_load dram_addr = @x[0], ocm_addr = %in[0, 0], dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, src_dim0 = 1, src_dim1 = 2, src_dim2 = 2, src_dim3 = 16, dram_stride0 = 64, dram_stride1 = 32, dram_stride2 = 16, dram_stride3 = 1, ocm_stride0 = 64, ocm_stride1 = 32, ocm_stride2 = 16, ocm_stride3 = 1, src = f16, dst = f16, layer = 0, tile = 0, push_next
    %1 = mlip.nop src = f16, dst = f16, tile = 0, queue = compute, pop_prev = %0, push_next
    %2 = mlip.tile_copy src_addr = %in[0, 0], dst_addr = %recv[0, 64], dst_tile_mask = 2, dim0 = 1, dim1 = 1, dim2 = 4, dim3 = 16, src_stride0 = 64, src_stride1 = 64, src_stride2 = 16, src_stride3 = 1, dst_stride0 = 64, dst_stride1 = 64, dst_stride2 = 16, dst_stride3 = 1, src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %1, push_prev
    mlip.barrier id = 0, src = f16, dst = f16, layer = 0, tile = 0, pop_next = %2
    %4 = mlip.barrier id = 0, src = f16, dst = f16, layer = 0, tile = 1, push_next
    mlip.dma_store dram_addr = @y[0], ocm_addr = %recv[0, 64], dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, src_dim0 = 1, src_dim1 = 2, src_dim2 = 2, src_dim3 = 16, dram_stride0 = 64, dram_stride1 = 32, dram_stride2 = 16, dram_stride3 = 1, ocm_stride0 = 64, ocm_stride1 = 32, ocm_stride2 = 16, ocm_stride3 = 1, src = f16, dst = f16, layer = 0, tile = 1, pop_prev = %4
  }
}

// CHECK:      %2 = mlip.tile_copy src_addr = %in[0, 0], dst_addr = %recv[0, 64], dst_tile_mask = 2, dim0 = 1, dim1 = 1, dim2 = 4, dim3 = 16, src_stride0 = 64, src_stride1 = 64, src_stride2 = 16, src_stride3 = 1, dst_stride0 = 64, dst_stride1 = 64, dst_stride2 = 16, dst_stride3 = 1, src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %1, push_prev{{$}}
// CHECK-NEXT: mlip.barrier id = 0, {{.*}}tile = 0, pop_next = %2{{$}}

// ASM:      main.tile0.dma_out:
// ASM-NEXT:   tile_copy src_addr = %in[0, 0], dst_addr = %recv[0, 64], dst_tile_mask = 2,
// ASM:      main.tile1.dma_out:
// ASM-NEXT:   dma_store dram_addr = @y[0], ocm_addr = %recv[0, 64],

// BIN: {{^}}4d52564c
