// RUN: mrvl-opt %s -p 'convert-graph-to-mrvl,mrvl-partition,mrvl-extended-precision{mode=targeted},mrvl-quantize' --split-input-file | filecheck %s
// RUN: mrvl-opt %s -p 'convert-graph-to-mrvl,mrvl-partition,mrvl-extended-precision{mode=auto},mrvl-quantize' --split-input-file | filecheck %s --check-prefix=AUTO

// mrvl-extended-precision, mode targeted (lowering/mrvl_extended_precision.py, `stack_fc`):
// each FC of a transformer sub-graph (a LayerNorm reads a residual Add) becomes one FC
// over Concat(x, x) and its weights' halves [Wh, Wl] stacked along K (8 -> 16). The two
// projections of the same LayerNorm output share one Concat; x stays fp16 (its readers
// are matrix engine inputs and a copy). Mode auto leaves this sub-graph as it is: it
// reads no single token's row.

func.func @main(%x: tensor<1x4x8xf32>) -> (tensor<1x4x8xf32>, tensor<1x4x8xf32>) {
  %g = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %res = graph.add %x, %x {onnx_node = "res"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %ln = graph.onnx %res, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %w = graph.constant dense<3.000000e-01> : tensor<8x8xf32>
  %bias = graph.constant dense<1.000000e-01> : tensor<8xf32>
  %mm = graph.matmul %ln, %w {onnx_node = "q/MatMul"} : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %q = graph.add %mm, %bias {onnx_node = "q/Add"} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %w2 = graph.constant dense<2.000000e-01> : tensor<8x8xf32>
  %mm2 = graph.matmul %ln, %w2 {onnx_node = "k/MatMul"} : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %k = graph.add %mm2, %bias {onnx_node = "k/Add"} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  func.return %q, %k : tensor<1x4x8xf32>, tensor<1x4x8xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK:       %[[LN:.+]] = mrvl.layernorm
// CHECK-NOT:   mrvl.out_dtype
// CHECK-SAME:  -> tensor<1x4x8xf32>
// CHECK-NEXT:  %[[X:.+]] = mrvl.reshape %[[LN]]
// CHECK:       %[[X2:.+]] = mrvl.concat %[[X]], %[[X]] {mrvl.extended_of = "[[Q:tvmgen_mrvl_main_[0-9]+]]", layer_name = "[[Q]]_stack", axis = 1 : i64} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x16xf32>
// Wh = fp16(0.3) = 0x3E99A000, Wl = 0.3 - Wh = 0xB84CC000, each row [8 x Wh, 8 x Wl].
// CHECK:       %[[W:.+]] = graph.constant dense<"0x00A0993E00A0993E00A0993E00A0993E00A0993E00A0993E00A0993E00A0993E00C04CB800C04CB800C04CB800C04CB800C04CB800C04CB800C04CB800C04CB8{{.*}}"> : tensor<8x16xf32>
// CHECK:       mrvl.fc %[[X2]], %[[W]], %{{.+}} {onnx_nodes = ["q/MatMul", "q/Add"], mrvl.extended_of = "[[Q]]", layer_name = "[[Q]]", activation = "none"} : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<4x8xf32>
// CHECK-NOT:   mrvl.concat
// CHECK:       mrvl.fc %[[X2]], %{{.+}}, %{{.+}} {onnx_nodes = ["k/MatMul", "k/Add"]{{.*}}(tensor<4x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<4x8xf32>

// AUTO-LABEL: func.func @tvmgen_mrvl_main_0
// AUTO-NOT:   mrvl.concat
// AUTO:       mrvl.fc %{{.+}}, %{{.+}}, %{{.+}} {onnx_nodes = ["q/MatMul", "q/Add"]{{.*}}(tensor<4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>

// -----

// A class-token classifier: the residual stream's row 0 (a one-row Gather, a Slice on the
// accelerator) into a head FC. Mode auto stacks the head: the sub-graph reads one token.

func.func @main(%x: tensor<1x4x8xf32>) -> tensor<1x1x8xf32> {
  %g = graph.constant dense<1.000000e+00> : tensor<8xf32>
  %b = graph.constant dense<0.000000e+00> : tensor<8xf32>
  %res = graph.add %x, %x {onnx_node = "res"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %ln = graph.onnx %res, %g, %b {op_type = "LayerNormalization", domain = "", opset = 17 : i64, attrs = {axis = -1 : i64, epsilon = 1.000000e-05 : f32}, onnx_node = "ln"} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %i = graph.constant dense<[0]> : tensor<1xi64>
  %cls = graph.onnx %ln, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}, onnx_node = "cls"} : (tensor<1x4x8xf32>, tensor<1xi64>) -> tensor<1x1x8xf32>
  %w = graph.constant dense<3.000000e-01> : tensor<8x8xf32>
  %bias = graph.constant dense<1.000000e-01> : tensor<8xf32>
  %mm = graph.matmul %cls, %w {onnx_node = "head/MatMul"} : (tensor<1x1x8xf32>, tensor<8x8xf32>) -> tensor<1x1x8xf32>
  %y = graph.add %mm, %bias {onnx_node = "head/Add"} : (tensor<1x1x8xf32>, tensor<8xf32>) -> tensor<1x1x8xf32>
  func.return %y : tensor<1x1x8xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK:       mrvl.slice
// CHECK:       mrvl.concat
// CHECK:       mrvl.fc {{.*}}(tensor<1x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<1x8xf32>

// AUTO-LABEL: func.func @tvmgen_mrvl_main_0
// AUTO:       %[[S:.+]] = mrvl.slice %{{.+}} {onnx_nodes = ["cls"]{{.*}}axis = 1 : i64, start = 0 : i64}
// AUTO:       %[[X:.+]] = mrvl.reshape %[[S]]
// AUTO:       %[[X2:.+]] = mrvl.concat %[[X]], %[[X]] {{.*}}-> tensor<1x16xf32>
// AUTO:       mrvl.fc %[[X2]], {{.*}}onnx_nodes = ["head/MatMul", "head/Add"]{{.*}}(tensor<1x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<1x8xf32>
