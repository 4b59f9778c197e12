// RUN: mrvl-opt %s -p 'mrvl-quantize,convert-mrvl-to-mlip' | filecheck %s

// A conv split as a grid on 4 tiles (as mrvl-tile-split annotates it: per tile a range of
// output rows, then a range of output channels): every tile loads the weights of its
// channels and the input rows of its band, and stores its box of the output.
// The conv is 1x1 with stride 2 and no padding: the DMA gathers only the pixels it reads
// (DRAM strides of 2 rows and 2 pixels) and the CONV runs with stride 1 on them.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x16xf32>) -> tensor<1x2x2x16xf32> attributes {mrvl.target = "accelerator", mrvl.num_tiles = 4 : i64} {
  %w = graph.constant dense<5.000000e-01> : tensor<16x1x1x16xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 2, 2>, mrvl.split = "grid", mrvl.tiles = array<i64: 0, 1, 0, 8, 0, 1, 8, 16, 1, 2, 0, 8, 1, 2, 8, 16>} : (tensor<1x4x4x16xf32>, tensor<16x1x1x16xf32>) -> tensor<1x2x2x16xf32>
  func.return %y : tensor<1x2x2x16xf32>
}

// CHECK:       %in = mlip.buffer "in", size = 64, slots = 2, kind = scratch, layer = 0
// CHECK:       mlip.layer @tvmgen_mrvl_main_1 attributes {kind = "Conv2D", index = 0 : i64, macs = 1024 : i64, split = "grid", blocks = 4 : i64}
// CHECK:         mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[0], ocm_addr = %w[0, 0], {{.*}}dim3 = 128,
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[IN:.+]][0], ocm_addr = %in[0, 0], dim0 = 1, dim1 = 1, dim2 = 2, dim3 = 16, {{.*}}dram_stride1 = 128, dram_stride2 = 32, dram_stride3 = 1,
// CHECK-NEXT:      mlip.conv in_addr = %in[0, 0], ih = 1, iw = 2, ic = 16, {{.*}}oh = 1, ow = 2, oc = 8, {{.*}}kh = 1, kw = 1, sh = 1, sw = 1, pad_t = 0, pad_l = 0,
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[OUT:.+]][0], ocm_addr = %out[0, 0], dim0 = 1, dim1 = 1, dim2 = 2, dim3 = 8, {{.*}}dram_stride1 = 32, dram_stride2 = 16,
// CHECK:         mlip.block attributes {tile = 1 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[256], ocm_addr = %w[0, 0],
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[IN]][0], ocm_addr = %in[0, 0],
// CHECK-NEXT:      mlip.conv
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[OUT]][16], ocm_addr = %out[0, 0],
// CHECK:         mlip.block attributes {tile = 2 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[0], ocm_addr = %w[0, 0],
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[IN]][256], ocm_addr = %in[0, 0],
// CHECK-NEXT:      mlip.conv
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[OUT]][64], ocm_addr = %out[0, 0],
// CHECK:         mlip.block attributes {tile = 3 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_w[256], ocm_addr = %w[0, 0],
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[IN]][256], ocm_addr = %in[0, 0],
// CHECK-NEXT:      mlip.conv
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[OUT]][80], ocm_addr = %out[0, 0],
