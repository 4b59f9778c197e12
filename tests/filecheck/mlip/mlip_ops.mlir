// RUN: mrvl-opt %s | mrvl-opt | filecheck %s
// RUN: mrvl-opt %s -t mlip-asm | filecheck %s --check-prefix=ASM
// RUN: mrvl-opt %s -t mlip-bin | filecheck %s --check-prefix=BIN

// A scheduled one-tile model written by hand: every instruction op prints as one assembly
// line and parses back to the same op (round trip). OCM operands are `!mlip.buffer` values
// (with a slot and a byte offset), dependencies are `!mlip.token` values: the load pushes a
// token to the compute queue (`push_next`, its result %0), the eltwise pops it
// (`pop_prev = %0`) and pushes one to the store.

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = ["x"], outputs = ["y"], ocm_end = 65536 : i64} {
  mlip.tensor @x {region = "input", shape = array<i64: 1, 2, 2, 16>, dtype = "f16"}
  mlip.tensor @y {region = "output", shape = array<i64: 1, 2, 2, 16>, dtype = "f32"}
  %in = mlip.buffer "in", size = 128, slots = 1, kind = scratch, layer = 0, addrs = [0]
  %out = mlip.buffer "out", size = 128, slots = 3, kind = scratch, layer = 0, addrs = [16384, 32768, 49152]
  mlip.layer @relu attributes {kind = "Sum2D", index = 0 : i64, macs = 0 : i64, split = "rows", blocks = 1 : i64} {
  }
  mlip.section attributes {section = "main"} {
    %0 = mlip.dma_load dram_addr = @x[0], ocm_addr = %in[0, 0], dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, src_dim0 = 1, src_dim1 = 2, src_dim2 = 2, src_dim3 = 16, dram_stride0 = 64, dram_stride1 = 32, dram_stride2 = 16, dram_stride3 = 1, ocm_stride0 = 64, ocm_stride1 = 32, ocm_stride2 = 16, ocm_stride3 = 1, src = f16, dst = f16, layer = 0, tile = 0, push_next
    %1 = mlip.eltwise a_addr = %in[0, 0], b_addr = %in[0, 0], out_addr = %out[0, 0], rows = 4, cols = 16, a_row_stride = 16, b_row_stride = 16, out_row_stride = 16, b_col_stride = 1, a_scale = 1.0, b_scale = 1.0, out_scale = 1.0, b_zp = 0, func = max, act = relu6, src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %0, push_next
    mlip.pool in_addr = %out[0, 0], ih = 2, iw = 2, c = 16, in_pix_stride = 16, out_addr = %out[1, 0], oh = 1, ow = 1, out_pix_stride = 16, kh = 2, kw = 2, sh = 1, sw = 1, pad_t = -1, pad_l = 0, func = avg, src = f16, dst = f16, tile = 0, count_pad
    mlip.convert in_addr = %out[1, 0], out_addr = %out[2, 32], rows = 1, cols = 16, in_row_stride = 16, out_row_stride = 16, out_scale = 0.5, src = f16, dst = i8, out_zp = -3, scale = 0.25, tile = 0, scale_flag
    mlip.nop src = f16, dst = f16, tile = 0, queue = compute
    mlip.dma_store dram_addr = @y[0], ocm_addr = %out[0, 0], dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, src_dim0 = 1, src_dim1 = 2, src_dim2 = 2, src_dim3 = 16, dram_stride0 = 64, dram_stride1 = 32, dram_stride2 = 16, dram_stride3 = 1, ocm_stride0 = 64, ocm_stride1 = 32, ocm_stride2 = 16, ocm_stride3 = 1, src = f16, dst = f32, layer = 0, tile = 0, pop_prev = %1
  }
}

// CHECK:      mlip.model @m attributes {num_tiles = 1 : i64, {{.*}}ocm_end = 65536 : i64}
// CHECK:        %in = mlip.buffer "in", size = 128, slots = 1, kind = scratch, layer = 0, addrs = [0]{{$}}
// CHECK:        %0 = mlip.dma_load dram_addr = @x[0], ocm_addr = %in[0, 0], dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, {{.*}}src = f16, dst = f16, layer = 0, tile = 0, push_next{{$}}
// CHECK-NEXT:   %1 = mlip.eltwise a_addr = %in[0, 0], {{.*}}a_scale = 1.0, b_scale = 1.0, out_scale = 1.0, b_zp = 0, func = max, act = relu6, src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %0, push_next{{$}}
// CHECK-NEXT:   mlip.pool {{.*}}pad_t = -1, pad_l = 0, func = avg, src = f16, dst = f16, tile = 0, count_pad{{$}}
// CHECK-NEXT:   mlip.convert in_addr = %out[1, 0], out_addr = %out[2, 32], {{.*}}out_scale = 0.5, src = f16, dst = i8, out_zp = -3, scale = 0.25, tile = 0, scale_flag{{$}}
// CHECK-NEXT:   mlip.nop src = f16, dst = f16, tile = 0, queue = compute{{$}}
// CHECK-NEXT:   mlip.dma_store dram_addr = @y[0], {{.*}}src = f16, dst = f32, layer = 0, tile = 0, pop_prev = %1{{$}}

// ASM:      ; model m: 1 tile(s), OCM [0, 65536), fp16
// ASM-NEXT: ; layer 0 relu Sum2D macs=0
// ASM-NEXT: main.tile0.dma_in:
// ASM-NEXT:   dma_load dram_addr = @x[0], ocm_addr = %in[0, 0],
// ASM-NEXT: main.tile0.compute:
// ASM-NEXT:   eltwise a_addr = %in[0, 0],
// ASM-NEXT:   pool in_addr = %out[0, 0],
// ASM-NEXT:   convert in_addr = %out[1, 0],
// ASM-NEXT:   nop src = f16
// ASM-NEXT: main.tile0.dma_out:
// ASM-NEXT:   dma_store dram_addr = @y[0],

// BIN: {{^}}4d52564c
