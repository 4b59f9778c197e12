// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-residency,mlip-ocm-alloc' | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-residency,mlip-ocm-alloc,mlip-dma-schedule' | mrvl-opt -t mlip-asm | filecheck %s --check-prefix=ASM
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-residency{enabled=false},mlip-ocm-alloc' | filecheck %s --check-prefix=OFF
// RUN: mrvl-opt %S/Inputs/residency_strided.mlir -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-residency,mlip-ocm-alloc' | filecheck %s --check-prefix=STRIDED
// RUN: mrvl-opt %S/Inputs/residency_spill.mlir -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2 ocm_size=65536 page_size=4096},convert-mrvl-to-mlip{ocm_size=65536 page_size=4096},mlip-residency,mlip-ocm-alloc' | filecheck %s --check-prefix=SPILL
// RUN: mrvl-opt %S/Inputs/residency_concat.mlir -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-residency,mlip-ocm-alloc' | filecheck %s --check-prefix=CONCAT
// RUN: mrvl-opt %S/Inputs/residency_concat.mlir -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-residency{enabled=false},mlip-ocm-alloc' | filecheck %s --check-prefix=CONCAT-OFF

// Two convs and a residual add on two tiles (row split). Both conv outputs stay in OCM:
// each gets a resident buffer (live from its producer to the add), the producers' stores
// become tile_copys into the band of every tile that reads those rows (the own tile's bit
// 1 is a local copy; bit 2 sends the halo row tile 1's 3x3 conv needs), the consumers'
// loads are gone and their convs / eltwise read the resident bands in place. Rows only
// the own tile reads are written there by the conv itself (a direct write: its store
// becomes a DMA_OUT nop). The model output is still stored to DRAM.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x8x4x8xf32>) -> tensor<1x8x4x8xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<2.500000e-01> : tensor<8x1x1x8xf32>
  %v = graph.constant dense<1.250000e-01> : tensor<8x3x3x8xf32>
  %a = mrvl.conv2d %x, %w {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x4x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x8x4x8xf32>
  %b = mrvl.conv2d %a, %v {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 1, 1, 1, 1>, strides = array<i64: 1, 1>} : (tensor<1x8x4x8xf32>, tensor<8x3x3x8xf32>) -> tensor<1x8x4x8xf32>
  %y = mrvl.sum %a, %b {layer_name = "tvmgen_mrvl_main_3", activation = "none"} : (tensor<1x8x4x8xf32>, tensor<1x8x4x8xf32>) -> tensor<1x8x4x8xf32>
  func.return %y : tensor<1x8x4x8xf32>
}

// CHECK-NOT:   mlip.tensor @tvmgen_mrvl_main_1_y
// CHECK-NOT:   mlip.tensor @tvmgen_mrvl_main_2_y
// CHECK:       %res_tvmgen_mrvl_main_1_y = mlip.buffer "res_tvmgen_mrvl_main_1_y", size = 320, slots = 1, kind = resident, layer = 0, last = 2, addrs = [1032192]{{$}}
// CHECK-NEXT:  %res_tvmgen_mrvl_main_2_y = mlip.buffer "res_tvmgen_mrvl_main_2_y", size = 256, slots = 1, kind = resident, layer = 1, last = 2, addrs = [1015808]{{$}}
// CHECK:       mlip.layer @tvmgen_mrvl_main_1
// CHECK:         mlip.conv in_addr = %in[0, 0], {{.*}}, out_addr = %res_tvmgen_mrvl_main_1_y[0, 0], oh = 2, ow = 4, oc = 8, out_pix_stride = 8,
// CHECK-NEXT:    mlip.nop src = f16, dst = f16, layer = 0, queue = dma_out
// CHECK:         mlip.tile_copy src_addr = %out[1, 0], dst_addr = %res_tvmgen_mrvl_main_1_y[0, 128], dst_tile_mask = 1, dim0 = 1, dim1 = 2,
// CHECK-NEXT:    mlip.tile_copy src_addr = %out[1, 64], dst_addr = %res_tvmgen_mrvl_main_1_y[0, 0], dst_tile_mask = 2, dim0 = 1, dim1 = 1,
// CHECK:       mlip.layer @tvmgen_mrvl_main_2
// CHECK:         mlip.block attributes {tile = 0 : i64} {
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_2_w[0],
// CHECK-NEXT:      mlip.conv in_addr = %res_tvmgen_mrvl_main_1_y[0, 0], ih = 3,
// CHECK:         mlip.block attributes {tile = 0 : i64} {
// CHECK-NEXT:      mlip.nop src = f16, dst = f16, layer = 1, queue = dma_in
// CHECK-NEXT:      mlip.conv in_addr = %res_tvmgen_mrvl_main_1_y[0, 64], ih = 4,
// CHECK:       mlip.layer @tvmgen_mrvl_main_3
// CHECK:           mlip.eltwise a_addr = %res_tvmgen_mrvl_main_1_y[0, 0], b_addr = %res_tvmgen_mrvl_main_2_y[0, 0],
// CHECK-NEXT:      mlip.dma_store dram_addr = @tvmgen_mrvl_main_0_o0[0],

// The copies (and the direct write's nop) run on DMA_OUT with the stores' tokens.
// ASM:       main.tile0.dma_out:
// ASM-NEXT:    nop src = f16, dst = f16, layer = 0, tile = 0, queue = dma_out, pop_prev = %{{[0-9]+}}{{$}}
// ASM-NEXT:    tile_copy src_addr = %out[1, 0], {{.*}}, layer = 0, tile = 0, pop_prev = %{{[0-9]+}}

// Residency off: every activation goes through DRAM as before.
// OFF:       mlip.tensor @tvmgen_mrvl_main_1_y {region = "scratch"
// OFF-NOT:   tile_copy
// OFF-NOT:   kind = resident

// Not lowered to OCM: a 128 KiB activation does not fit a 64 KiB OCM next to the layers'
// blocks, so it spills (stays in DRAM: dma_store / dma_load, no resident buffer).
// SPILL:     mlip.tensor @tvmgen_mrvl_main_1_y {region = "scratch"
// SPILL-NOT: kind = resident
// SPILL:     mlip.dma_store dram_addr = @tvmgen_mrvl_main_1_y[0]
// SPILL-NOT: tile_copy
// SPILL:     mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_y[0]

// A strided 1x1 conv reads its input in place: instead of the DMA's gather of every second
// column, the conv reads the full-width rows of the band (iw = 8, pixel stride 8) with
// sw = 2; its second block starts at input row 2 (2 x 64 elements x 2 bytes = 256).
// STRIDED:     mlip.layer @tvmgen_mrvl_main_2
// STRIDED-NOT: mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_y
// STRIDED:     mlip.conv in_addr = %res_tvmgen_mrvl_main_1_y[0, 0], ih = 1, iw = 8, ic = 8, in_pix_stride = 8, {{.*}}ow = 4, {{.*}}kh = 1, kw = 1, sh = 1, sw = 2, pad_t = 0, pad_l = 0,
// STRIDED:     mlip.conv in_addr = %res_tvmgen_mrvl_main_1_y[0, 256], ih = 1, iw = 8,

// Concat in place: conv a writes channels 0-7 of the Concat's resident band directly (pixel
// stride 16), conv b reads them there and writes channels 8-15; the Concat has no blocks
// and the 1x1 conv after it reads the band: no activation touches DRAM.
// CONCAT-NOT:  mlip.tensor @tvmgen_mrvl_main_1_y
// CONCAT-NOT:  mlip.tensor @tvmgen_mrvl_main_2_y
// CONCAT-NOT:  mlip.tensor @tvmgen_mrvl_main_3_y
// CONCAT:      %res_tvmgen_mrvl_main_3_y = mlip.buffer "res_tvmgen_mrvl_main_3_y", size = 512, slots = 1, kind = resident, layer = 0, last = 3,
// CONCAT:      mlip.layer @tvmgen_mrvl_main_1
// CONCAT:        mlip.conv in_addr = %in[0, 0], {{.*}}, out_addr = %res_tvmgen_mrvl_main_3_y[0, 0], oh = 2, ow = 4, oc = 8, out_pix_stride = 16,
// CONCAT-NEXT:   mlip.nop src = f16, dst = f16, layer = 0, queue = dma_out
// CONCAT:      mlip.layer @tvmgen_mrvl_main_2
// CONCAT:        mlip.conv in_addr = %res_tvmgen_mrvl_main_3_y[0, 0], ih = 2, iw = 4, ic = 8, in_pix_stride = 16, out_addr = %res_tvmgen_mrvl_main_3_y[0, 16], oh = 2, ow = 4, oc = 8, out_pix_stride = 16,
// CONCAT:      mlip.layer @tvmgen_mrvl_main_3 attributes {kind = "Concat", index = 2 : i64, macs = 0 : i64, split = "rows", blocks = 0 : i64} {
// CONCAT-NEXT: ^bb0:
// CONCAT-NEXT: }
// CONCAT:      mlip.layer @tvmgen_mrvl_main_4
// CONCAT:        mlip.conv in_addr = %res_tvmgen_mrvl_main_3_y[0, 0], ih = 2, iw = 4, ic = 16, in_pix_stride = 16,

// Not lowered in place with residency off: the Concat copies both inputs through DRAM.
// CONCAT-OFF:  mlip.layer @tvmgen_mrvl_main_3 attributes {kind = "Concat", index = 2 : i64, macs = 0 : i64, split = "rows", blocks = 8 : i64} {
// CONCAT-OFF:    mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_y
// CONCAT-OFF:    mlip.copy
// CONCAT-OFF:    mlip.dma_store dram_addr = @tvmgen_mrvl_main_3_y
