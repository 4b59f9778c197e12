// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=1},convert-mrvl-to-mlip' | filecheck %s

// Squeeze-excite's broadcast product [1,2,2,8] * [1,1,1,8]: the gate is loaded with DRAM
// strides 0 over H and W, then one ELTWISE MUL per block; a standalone leaky_relu is one ACT
// per block with its slope in alpha.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x2x2x8xf32>, %s: tensor<1x1x1x8xf32>) -> tensor<1x2x2x8xf32> attributes {mrvl.target = "accelerator"} {
  %m = mrvl.mul %x, %s {layer_name = "tvmgen_mrvl_main_1", activation = "none"} : (tensor<1x2x2x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x2x2x8xf32>
  %y = mrvl.activation %m {layer_name = "tvmgen_mrvl_main_2", activation = "leaky_relu", alpha = 1.250000e-01 : f32} : (tensor<1x2x2x8xf32>) -> tensor<1x2x2x8xf32>
  func.return %y : tensor<1x2x2x8xf32>
}

// CHECK:       mlip.model @tvmgen_mrvl_main_0 attributes {{{.*}}inputs = ["[[X:[^"]+]]", "[[S:[^"]+]]"], outputs = ["[[OUT:[^"]+]]"]}
// CHECK:       mlip.tensor @[[Y:.+_y]] {region = "scratch", shape = array<i64: 1, 2, 2, 8>
// CHECK:       mlip.layer @tvmgen_mrvl_main_1 attributes {kind = "Mul2D", index = 0 : i64
// CHECK:         mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[X]][0], ocm_addr = %a[0, 0], {{.*}}dram_stride1 = 16, dram_stride2 = 8, dram_stride3 = 1,
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[S]][0], ocm_addr = %b[0, 0], {{.*}}dram_stride1 = 0, dram_stride2 = 0, dram_stride3 = 1,
// CHECK-NEXT:      mlip.eltwise a_addr = %a[0, 0], b_addr = %b[0, 0], out_addr = %out[0, 0], {{.*}}func = mul, src = f16, dst = f16
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[Y]][0], ocm_addr = %out[0, 0],
// CHECK:       mlip.layer @tvmgen_mrvl_main_2 attributes {kind = "Activation", index = 1 : i64
// CHECK:         mlip.block attributes {tile = 0 : i64}
// CHECK-NEXT:      mlip.dma_load dram_addr = @[[Y]][0], ocm_addr = %in[0, 0],
// CHECK-NEXT:      mlip.act in_addr = %in[0, 0], out_addr = %out_1[0, 0], {{.*}}act = leaky_relu, src = f16, dst = f16, alpha = 0.125
// CHECK-NEXT:      mlip.dma_store dram_addr = @[[OUT]][0], ocm_addr = %out_1[0, 0],
