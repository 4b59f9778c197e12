// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip' --split-input-file | filecheck %s

// A 1x1 conv with bias and relu on 2 tiles: weights (fp16) and bias (fp32) become weights
// tensors; the layer's OCM buffers are `!mlip.buffer` values that the instructions take as
// operands (`%in[slot, offset]`); each tile loads the weights once, then streams two blocks
// of one output row through the two slots of `in` and `out`. No bias-less scale operand.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %b = graph.constant dense<2.500000e-01> : tensor<3xf32>
  %y = mrvl.conv2d %x, %w, %b {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>, tensor<3xf32>) -> tensor<1x4x4x3xf32>
  func.return %y : tensor<1x4x4x3xf32>
}

// CHECK:       mlip.model @tvmgen_mrvl_main_0 attributes {num_tiles = 2 : i64, {{.*}}quantize = "fp16", inputs = ["[[IN:.+]]"], outputs = ["[[OUT:.+]]"]}
// CHECK-NEXT:    mlip.tensor @[[IN]] {region = "input", shape = array<i64: 1, 4, 4, 2>, dtype = "f16"
// CHECK-NEXT:    mlip.tensor @[[OUT]] {region = "output", shape = array<i64: 1, 4, 4, 3>, dtype = "f16"
// CHECK-NEXT:    mlip.tensor @[[W:.+]] {region = "weights", shape = array<i64: 3, 1, 1, 2>, dtype = "f16", {{.*}}data = #mlip.bytes<"0x003800380038003800380038">}
// CHECK-NEXT:    mlip.tensor @[[B:.+]] {region = "weights", shape = array<i64: 3>, dtype = "f32", {{.*}}data = #mlip.bytes<"0x0000803e0000803e0000803e">}
// CHECK-NEXT:    %w = mlip.buffer "w", size = 12, slots = 1, kind = weights, layer = 0{{$}}
// CHECK-NEXT:    %bias = mlip.buffer "bias", size = 12, slots = 1, kind = weights, layer = 0{{$}}
// CHECK-NEXT:    %in = mlip.buffer "in", size = 16, slots = 2, kind = scratch, layer = 0{{$}}
// CHECK-NEXT:    %out = mlip.buffer "out", size = 24, slots = 2, kind = scratch, layer = 0{{$}}
// CHECK-NEXT:    mlip.layer @tvmgen_mrvl_main_1 attributes {kind = "Conv2D", index = 0 : i64, macs = 96 : i64, split = "rows", blocks = 4 : i64}
// CHECK-NEXT:      mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:        mlip.dma_load dram_addr = @[[W]][0], ocm_addr = %w[0, 0], {{.*}}dim3 = 6,
// CHECK-NEXT:        mlip.dma_load dram_addr = @[[B]][0], ocm_addr = %bias[0, 0], {{.*}}dim3 = 3,
// CHECK-NEXT:        mlip.dma_load dram_addr = @[[IN]][0], ocm_addr = %in[0, 0], dim0 = 1, dim1 = 1, dim2 = 4, dim3 = 2, {{.*}}src = f16, dst = f16
// CHECK-NEXT:        mlip.conv in_addr = %in[0, 0], ih = 1, iw = 4, ic = 2, in_pix_stride = 2, out_addr = %out[0, 0], oh = 1, ow = 4, oc = 3, out_pix_stride = 3, w_addr = %w[0, 0], bias_addr = %bias[0, 0], kh = 1, kw = 1, sh = 1, sw = 1, pad_t = 0, pad_l = 0, dh = 1, dw = 1, groups = 1, act = relu, src = f16, dst = f16, layer = 0
// CHECK-NEXT:        mlip.dma_store dram_addr = @[[OUT]][0], ocm_addr = %out[0, 0], {{.*}}dim2 = 4, dim3 = 3,
// CHECK-NEXT:      }
// CHECK-NEXT:      mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:        mlip.dma_load dram_addr = @[[IN]][16], ocm_addr = %in[1, 0],
// CHECK-NEXT:        mlip.conv in_addr = %in[1, 0], {{.*}}out_addr = %out[1, 0],
// CHECK-NEXT:        mlip.dma_store dram_addr = @[[OUT]][24], ocm_addr = %out[1, 0],
// CHECK:         mlip.block attributes {tile = 1 : i64}
// CHECK:           mlip.dma_load dram_addr = @[[IN]][32], ocm_addr = %in[0, 0],
// CHECK:         mlip.block attributes {tile = 1 : i64}
// CHECK:           mlip.dma_store dram_addr = @[[OUT]][72], ocm_addr = %out[1, 0],
// CHECK:       func.func private @tvmgen_mrvl_main_0(tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32>{{$}}
// CHECK-NOT:   mrvl.

// -----

// Max pool with padding: each block's pad_t says where its loaded rows start; the
// reshape is an alias (no layer), the FC is a GEMM over all 8 outputs on one tile.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x8xf32> attributes {mrvl.target = "accelerator"} {
  %p = mrvl.maxpool2d %x {kernel_shape = array<i64: 3, 3>, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 1, 1, 1, 1>, strides = array<i64: 2, 2>} : (tensor<1x4x4x2xf32>) -> tensor<1x2x2x2xf32>
  %f = mrvl.reshape %p {layer_name = "tvmgen_mrvl_main_2"} : (tensor<1x2x2x2xf32>) -> tensor<1x8xf32>
  %w = graph.constant dense<1.000000e+00> : tensor<8x8xf32>
  %y = mrvl.fc %f, %w {activation = "none", layer_name = "tvmgen_mrvl_main_3"} : (tensor<1x8xf32>, tensor<8x8xf32>) -> tensor<1x8xf32>
  func.return %y : tensor<1x8xf32>
}

// CHECK:       mlip.tensor @tvmgen_mrvl_main_2_y {region = "scratch", {{.*}}alias_of = "tvmgen_mrvl_main_1_y"}
// CHECK:       mlip.layer @tvmgen_mrvl_main_1 attributes {kind = "Maxpool2D", index = 0 : i64, macs = 0 : i64, split = "rows", {{.*}}}
// CHECK:         mlip.pool in_addr = %in[0, 0], ih = 2, iw = 4, c = 2, in_pix_stride = 2, out_addr = %out[0, 0], oh = 1, ow = 2, out_pix_stride = 2, kh = 3, kw = 3, sh = 2, sw = 2, pad_t = 1, pad_l = 1, func = max,
// CHECK:         mlip.pool in_addr = %in[1, 0], ih = 3, iw = 4, {{.*}}pad_t = 0, pad_l = 1, func = max,
// CHECK:       mlip.layer @tvmgen_mrvl_main_3 attributes {kind = "FC", index = 1 : i64, macs = 64 : i64, split = "channels", {{.*}}}
// CHECK:         mlip.dma_load dram_addr = @tvmgen_mrvl_main_1_y[0], ocm_addr = %x[0, 0]
// CHECK:         mlip.gemm in_addr = %x[0, 0], m = 1, k = 8, in_row_stride = 8, out_addr = %{{out(_[0-9]+)?}}[0, 0], n = 8, out_row_stride = 8, w_addr = %w[0, 0]
