// RUN: mrvl-opt %s -p convert-graph-to-mrvl,mrvl-partition,mrvl-extended-precision,mrvl-quantize --split-input-file | filecheck %s

// mrvl-extended-precision (lowering/mrvl_extended_precision.py): an FC of a transformer
// sub-graph (a LayerNorm reads a residual Add) becomes three fp16 GEMM passes on split operands: the
// high half of x (-fp16(x), kept fp16 by mrvl.high_half), its low half x - fp16(x), FCs of
// (x, Wh) with the bias, (xl, Wh) and (x, Wl), summed in fp32; the FC's name moves to the
// final sum. The policy then keeps x (the LayerNorm) and the partial sums fp32.

func.func @main(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %g = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %ln = graph.onnx %x, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %w = graph.constant dense<3.000000e-01> : tensor<8x8xf32>
  %bias = graph.constant dense<1.000000e-01> : tensor<8xf32>
  %mm = graph.matmul %ln, %w {onnx_node = "fc/MatMul"} : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %y = graph.add %mm, %bias {onnx_node = "fc/Add"} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %r = graph.add %x, %y {onnx_node = "residual"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %g2 = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b2 = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %out = graph.onnx %r, %g2, %b2 {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln2"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  func.return %out : tensor<1x4x8xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK:       %[[LN:.+]] = mrvl.layernorm %{{.+}} mrvl.out_dtype = "f32"
// CHECK:       %[[X:.+]] = mrvl.reshape %[[LN]]
// Wh = fp16(0.3) = 0x3E99A000 (0.29993), Wl = 0.3 - Wh = 0xB84CC000 (-4.88e-05).
// CHECK:       %[[WH:.+]] = graph.constant dense<"0x00A0993E"> : tensor<8x8xf32>
// CHECK:       %[[WL:.+]] = graph.constant dense<"0x00C04CB8"> : tensor<8x8xf32>
// CHECK:       %[[M1:.+]] = graph.constant dense<-1.000000e+00> : tensor<1x1xf32>
// CHECK:       %[[NEG:.+]] = mrvl.mul %[[X]], %[[M1]] {mrvl.high_half, mrvl.extended_of = "[[FC:tvmgen_mrvl_main_[0-9]+]]", layer_name = "[[FC]]_neg", activation = "none"}
// CHECK:       %[[LO:.+]] = mrvl.sum %[[X]], %[[NEG]] {mrvl.extended_of = "[[FC]]", layer_name = "[[FC]]_lo", activation = "none"}
// CHECK:       %[[HH:.+]] = mrvl.fc %[[X]], %[[WH]], %{{.+}} {mrvl.extended_of = "[[FC]]", mrvl.out_dtype = "f32", layer_name = "[[FC]]_hh"
// CHECK:       %[[LH:.+]] = mrvl.fc %[[LO]], %[[WH]] {mrvl.extended_of = "[[FC]]", mrvl.out_dtype = "f32", layer_name = "[[FC]]_lh"
// CHECK:       %[[HL:.+]] = mrvl.fc %[[X]], %[[WL]] {mrvl.extended_of = "[[FC]]", mrvl.out_dtype = "f32", layer_name = "[[FC]]_hl"
// CHECK:       %[[S:.+]] = mrvl.sum %[[HH]], %[[LH]] {mrvl.extended_of = "[[FC]]", mrvl.out_dtype = "f32", layer_name = "[[FC]]_sum"
// CHECK:       mrvl.sum %[[S]], %[[HL]] {{{.*}}mrvl.extended_of = "[[FC]]", mrvl.out_dtype = "f32", layer_name = "[[FC]]", activation = "none"}

// -----

// A MatMul of two activations (no attention epilogue) in a transformer sub-graph: both
// operands split, three MatMul passes writing fp32 (the transpose stays folded), two sums.

func.func @main(%x: tensor<1x4x8xf32>) -> tensor<1x4x4xf32> {
  %g = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %res = graph.add %x, %x {onnx_node = "res"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %ln = graph.onnx %res, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %t = graph.transpose %x {perm = array<i64: 0, 2, 1>, onnx_node = "t"} : (tensor<1x4x8xf32>) -> tensor<1x8x4xf32>
  %mm = graph.matmul %ln, %t {onnx_node = "mm"} : (tensor<1x4x8xf32>, tensor<1x8x4xf32>) -> tensor<1x4x4xf32>
  %r = graph.add %mm, %mm {onnx_node = "double"} : (tensor<1x4x4xf32>, tensor<1x4x4xf32>) -> tensor<1x4x4xf32>
  func.return %r : tensor<1x4x4xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK:       mrvl.sum %[[X:[^ ,]+]], %[[X]] {onnx_nodes = ["res"]
// CHECK:       %[[LN:.+]] = mrvl.layernorm %{{[^ ,]+}}, {{.*}}mrvl.out_dtype = "f32"
// CHECK:       %[[AN:.+]] = mrvl.mul %[[LN]], %{{.+}} {mrvl.high_half, mrvl.extended_of = "[[MM:tvmgen_mrvl_main_[0-9]+]]", layer_name = "[[MM]]_a_neg"
// CHECK:       %[[AL:.+]] = mrvl.sum %[[LN]], %[[AN]] {{.*}}layer_name = "[[MM]]_a_lo"
// CHECK:       %[[BN:.+]] = mrvl.mul %[[X]], %{{.+}} {mrvl.high_half, {{.*}}layer_name = "[[MM]]_b_neg"
// CHECK:       %[[BL:.+]] = mrvl.sum %[[X]], %[[BN]] {{.*}}layer_name = "[[MM]]_b_lo"
// CHECK:       %[[HH:.+]] = mrvl.matmul %[[LN]], %[[X]] {{.*}}mrvl.out_dtype = "f32", layer_name = "[[MM]]_hh", b_perm = array<i64: 0, 2, 1>}
// CHECK:       %[[LH:.+]] = mrvl.matmul %[[AL]], %[[X]] {{.*}}mrvl.out_dtype = "f32", layer_name = "[[MM]]_lh", b_perm = array<i64: 0, 2, 1>}
// CHECK:       %[[HL:.+]] = mrvl.matmul %[[LN]], %[[BL]] {{.*}}mrvl.out_dtype = "f32", layer_name = "[[MM]]_hl", b_perm = array<i64: 0, 2, 1>}
// CHECK:       %[[S:.+]] = mrvl.sum %[[HH]], %[[LH]] {{.*}}layer_name = "[[MM]]_sum"
// CHECK:       mrvl.sum %[[S]], %[[HL]] {onnx_nodes = ["mm"], {{.*}}layer_name = "[[MM]]", activation = "none"}

// -----

// Not lowered: no LayerNorm (a CNN sub-graph), the FC is unchanged.

func.func @main(%x: tensor<1x8xf32>) -> tensor<1x8xf32> {
  %w = graph.constant dense<2.500000e-01> : tensor<8x8xf32>
  %mm = graph.matmul %x, %w {onnx_node = "fc/MatMul"} : (tensor<1x8xf32>, tensor<8x8xf32>) -> tensor<1x8xf32>
  %r = graph.add %x, %mm {onnx_node = "residual"} : (tensor<1x8xf32>, tensor<1x8xf32>) -> tensor<1x8xf32>
  func.return %r : tensor<1x8xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK-NOT:   mrvl.extended_of
// CHECK:       mrvl.fc %{{.+}}
// CHECK-NOT:   mrvl.extended_of
// CHECK:       func.return
