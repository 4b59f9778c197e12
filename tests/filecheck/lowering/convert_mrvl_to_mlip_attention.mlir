// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=1},convert-mrvl-to-mlip' --split-input-file | filecheck %s

// The masked attention epilogue: per block the mask row is loaded as fp32 (stride 0 over
// heads and rows: one row, b_row_stride 0), the GEMM writes fp32 scores, ELTWISE ADD with
// SCALE computes 0.5 * scores + mask in place, SOFTMAX turns the fp32 scores into fp16
// probabilities in place. The precision policy (a LayerNorm in the sub-graph): the Sum2D
// feeding the LayerNorm loads its fp16 operands as fp32, adds in fp32 and stores an fp32
// tensor, which the LayerNorm reads as fp32. Not lowered (second case, no LayerNorm): the
// same Sum2D stays fp16.

func.func @tvmgen_mrvl_main_0(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x8x4xf32>, %mask: tensor<1x1x1x4xf32>, %r: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> attributes {mrvl.target = "accelerator"} {
  %g = graph.constant dense<1.000000e+00> : tensor<4xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<4xf32>
  %p = mrvl.matmul %q, %k, %mask {layer_name = "tvmgen_mrvl_main_1", softmax_scale = 5.000000e-01 : f32} : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>, tensor<1x1x1x4xf32>) -> tensor<1x2x4x4xf32>
  %s = mrvl.sum %p, %r {layer_name = "tvmgen_mrvl_main_2", activation = "none"} : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %n = mrvl.layernorm %s, %g, %b {layer_name = "tvmgen_mrvl_main_3", epsilon = 1.000000e-05 : f32} : (tensor<1x2x4x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<1x2x4x4xf32>
  func.return %n : tensor<1x2x4x4xf32>
}

// CHECK:       mlip.model @tvmgen_mrvl_main_0 attributes {{{.*}}inputs = ["[[Q:[^"]+]]", "[[K:[^"]+]]", "[[M:[^"]+]]", "[[R:[^"]+]]"]
// CHECK:       mlip.tensor @[[P:.+_1_y]] {region = "scratch", shape = array<i64: 1, 2, 4, 4>, dtype = "f16"
// CHECK-NEXT:  mlip.tensor @[[S:.+_2_y]] {region = "scratch", shape = array<i64: 1, 2, 4, 4>, dtype = "f32"
// CHECK:       mlip.layer @tvmgen_mrvl_main_1 attributes {kind = "MatMul"
// CHECK:         mlip.block attributes {tile = 0 : i64}
// CHECK:           mlip.dma_load dram_addr = @[[M]][0], ocm_addr = %mask[0, 0], dim0 = 1, dim1 = 1, dim2 = 1, dim3 = 4, {{.*}}dram_stride2 = 0, dram_stride3 = 1, {{.*}}src = f16, dst = f32
// CHECK-NEXT:      mlip.gemm {{.*}}out_addr = %out[0, 0], {{.*}}src = f16, dst = f32
// CHECK-NEXT:      mlip.eltwise a_addr = %out[0, 0], b_addr = %mask[0, 0], out_addr = %out[0, 0], rows = 2, cols = 4, a_row_stride = 4, b_row_stride = 0, {{.*}}a_scale = 0.5, b_scale = 1.0, out_scale = 1.0, {{.*}}func = add, src = f32, dst = f32, {{.*}}scale_flag
// CHECK-NEXT:      mlip.softmax in_addr = %out[0, 0], out_addr = %out[0, 0], {{.*}}src = f32, dst = f16
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[P]][0], ocm_addr = %out[0, 0], {{.*}}src = f16, dst = f16
// CHECK:       mlip.layer @tvmgen_mrvl_main_2 attributes {kind = "Sum2D"
// CHECK:           mlip.dma_load dram_addr = @[[P]][0], {{.*}}src = f16, dst = f32
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[R]][0], {{.*}}src = f16, dst = f32
// CHECK-NEXT:      mlip.eltwise {{.*}}func = add, src = f32, dst = f32
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[S]][0], {{.*}}src = f32, dst = f32
// CHECK:       mlip.layer @tvmgen_mrvl_main_3 attributes {kind = "LayerNorm"
// CHECK:           mlip.dma_load dram_addr = @[[S]][0], {{.*}}src = f32, dst = f32
// CHECK:           mlip.layernorm {{.*}}src = f32, dst = f32
// CHECK-NEXT:      mlip.dma_store {{.*}}src = f32, dst = f16

// -----

func.func @tvmgen_mrvl_main_0(%p: tensor<1x2x4x4xf32>, %r: tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32> attributes {mrvl.target = "accelerator"} {
  %s = mrvl.sum %p, %r {layer_name = "tvmgen_mrvl_main_2", activation = "none"} : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %t = mrvl.sum %s, %r {layer_name = "tvmgen_mrvl_main_3", activation = "none"} : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  func.return %t : tensor<1x2x4x4xf32>
}

// CHECK:       mlip.tensor @{{.+_2_y}} {region = "scratch", shape = array<i64: 1, 2, 4, 4>, dtype = "f16"
// CHECK:       mlip.layer @tvmgen_mrvl_main_2 attributes {kind = "Sum2D"
// CHECK:           mlip.eltwise {{.*}}func = add, src = f16, dst = f16
