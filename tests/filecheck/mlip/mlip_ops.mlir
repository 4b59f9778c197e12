// RUN: mrvl-opt %s | mrvl-opt | filecheck %s
// RUN: mrvl-opt %s -t mlip-asm | filecheck %s --check-prefix=ASM

// A scheduled one-tile model written by hand: every instruction op prints as one assembly
// line and parses back to the same op (round trip).

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = ["x"], outputs = ["y"], ocm_end = 65536 : i64} {
  mlip.tensor @x {region = "input", shape = array<i64: 1, 2, 2, 16>, dtype = "f16"}
  mlip.tensor @y {region = "output", shape = array<i64: 1, 2, 2, 16>, dtype = "f32"}
  mlip.layer @relu attributes {kind = "Sum2D", index = 0 : i64, macs = 0 : i64, split = "rows"} {
  ^bb0:
  }
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "dma_in"} {
    mlip.dma_load dram_addr = @x[0], ocm_addr = 0, dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, src_dim0 = 1, src_dim1 = 2, src_dim2 = 2, src_dim3 = 16, dram_stride0 = 64, dram_stride1 = 32, dram_stride2 = 16, dram_stride3 = 1, ocm_stride0 = 64, ocm_stride1 = 32, ocm_stride2 = 16, ocm_stride3 = 1, src = f16, dst = f16, layer = 0, push_next
  }
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "compute"} {
    mlip.eltwise a_addr = 0, b_addr = 0, out_addr = 16384, rows = 4, cols = 16, a_row_stride = 16, b_row_stride = 16, out_row_stride = 16, b_col_stride = 1, a_scale = 1.0, b_scale = 1.0, out_scale = 1.0, b_zp = 0, func = max, act = relu6, src = f16, dst = f16, layer = 0, pop_prev, push_next
    mlip.pool in_addr = 16384, ih = 2, iw = 2, c = 16, in_pix_stride = 16, out_addr = 32768, oh = 1, ow = 1, out_pix_stride = 16, kh = 2, kw = 2, sh = 1, sw = 1, pad_t = -1, pad_l = 0, func = avg, src = f16, dst = f16, count_pad
    mlip.convert in_addr = 32768, out_addr = 49152, rows = 1, cols = 16, in_row_stride = 16, out_row_stride = 16, out_scale = 0.5, src = f16, dst = i8, out_zp = -3, scale = 0.25, scale_flag
    mlip.nop src = f16, dst = f16, queue = compute
  }
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "dma_out"} {
    mlip.dma_store dram_addr = @y[0], ocm_addr = 16384, dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, src_dim0 = 1, src_dim1 = 2, src_dim2 = 2, src_dim3 = 16, dram_stride0 = 64, dram_stride1 = 32, dram_stride2 = 16, dram_stride3 = 1, ocm_stride0 = 64, ocm_stride1 = 32, ocm_stride2 = 16, ocm_stride3 = 1, src = f16, dst = f32, layer = 0, pop_prev
  }
}

// CHECK:      mlip.model @m attributes {num_tiles = 1 : i64, {{.*}}ocm_end = 65536 : i64}
// CHECK:        mlip.dma_load dram_addr = @x[0], ocm_addr = 0, dim0 = 1, dim1 = 2, dim2 = 2, dim3 = 16, {{.*}}src = f16, dst = f16, layer = 0, push_next{{$}}
// CHECK:        mlip.eltwise a_addr = 0, {{.*}}a_scale = 1.0, b_scale = 1.0, out_scale = 1.0, b_zp = 0, func = max, act = relu6, src = f16, dst = f16, layer = 0, pop_prev, push_next{{$}}
// CHECK-NEXT:   mlip.pool {{.*}}pad_t = -1, pad_l = 0, func = avg, src = f16, dst = f16, count_pad{{$}}
// CHECK-NEXT:   mlip.convert {{.*}}out_scale = 0.5, src = f16, dst = i8, out_zp = -3, scale = 0.25, scale_flag{{$}}
// CHECK-NEXT:   mlip.nop src = f16, dst = f16, queue = compute{{$}}
// CHECK:        mlip.dma_store dram_addr = @y[0], {{.*}}src = f16, dst = f32, layer = 0, pop_prev{{$}}

// ASM:      ; model m: 1 tile(s), OCM [0, 65536), fp16
// ASM-NEXT: ; layer 0 relu Sum2D macs=0
// ASM-NEXT: main.tile0.dma_in:
// ASM-NEXT:   dma_load dram_addr = @x[0], ocm_addr = 0,
// ASM-NEXT: main.tile0.compute:
// ASM-NEXT:   eltwise a_addr = 0,
// ASM-NEXT:   pool in_addr = 16384,
// ASM-NEXT:   convert in_addr = 32768,
// ASM-NEXT:   nop src = f16
// ASM-NEXT: main.tile0.dma_out:
// ASM-NEXT:   dma_store dram_addr = @y[0],
