// RUN: mrvl-opt %s -p convert-graph-to-mrvl --split-input-file | filecheck %s

// ViT's class token: a Concat with one constant operand is an mrvl.concat (the constant is
// its operand), and a Gather of one constant index along axis 1 is an mrvl.slice (a scalar
// index adds a reshape). BERT's attention mask: the Add of the mask between the scaled
// scores and the Softmax becomes the score MatMul's mask operand. Not lowered: a Gather of
// indices that are not consecutive, a Concat of constants only.

func.func @class_token(%x: tensor<1x4x8xf32>) -> (tensor<1x1x8xf32>, tensor<1x8xf32>) {
  %cls = graph.constant dense<5.000000e-01> : tensor<1x1x8xf32>
  %cat = graph.concat %cls, %x {axis = 1 : i64, onnx_node = "Concat"} : (tensor<1x1x8xf32>, tensor<1x4x8xf32>) -> tensor<1x5x8xf32>
  %w = graph.constant dense<2.500000e-01> : tensor<8x8xf32>
  %h = graph.matmul %cat, %w {onnx_node = "fc"} : (tensor<1x5x8xf32>, tensor<8x8xf32>) -> tensor<1x5x8xf32>
  %i = graph.constant dense<0> : tensor<1xi64>
  %row = graph.onnx %h, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}, onnx_node = "Gather"} : (tensor<1x5x8xf32>, tensor<1xi64>) -> tensor<1x1x8xf32>
  %j = graph.constant dense<-1> : tensor<i64>
  %last = graph.onnx %h, %j {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}, onnx_node = "Gather_last"} : (tensor<1x5x8xf32>, tensor<i64>) -> tensor<1x8xf32>
  func.return %row, %last : tensor<1x1x8xf32>, tensor<1x8xf32>
}

// CHECK-LABEL: func.func @class_token
// CHECK:       %[[CLS:.+]] = graph.constant {{.*}} : tensor<1x1x8xf32>
// CHECK-NEXT:  %[[CAT:.+]] = mrvl.concat %[[CLS]], %{{.+}} {onnx_nodes = ["Concat"], layer_name = "tvmgen_mrvl_main_0", axis = 1 : i64} : (tensor<1x1x8xf32>, tensor<1x4x8xf32>) -> tensor<1x5x8xf32>
// CHECK:       %[[H:.+]] = mrvl.reshape %{{.+}} : (tensor<5x8xf32>) -> tensor<1x5x8xf32>
// CHECK:       %[[ROW:.+]] = mrvl.slice %[[H]] {onnx_nodes = ["Gather"], layer_name = "{{.+}}", axis = 1 : i64, start = 0 : i64} : (tensor<1x5x8xf32>) -> tensor<1x1x8xf32>
// CHECK:       %[[PIECE:.+]] = mrvl.slice %[[H]] {layer_name = "{{.+}}", axis = 1 : i64, start = 4 : i64} : (tensor<1x5x8xf32>) -> tensor<1x1x8xf32>
// CHECK-NEXT:  %[[LAST:.+]] = mrvl.reshape %[[PIECE]] {onnx_nodes = ["Gather_last"], layer_name = "{{.+}}"} : (tensor<1x1x8xf32>) -> tensor<1x8xf32>
// CHECK-NOT:   graph.onnx
// CHECK:       func.return %[[ROW]], %[[LAST]]

// -----

func.func @masked_attention(%q: tensor<1x2x4x8xf32>, %k: tensor<1x2x8x4xf32>, %v: tensor<1x2x4x8xf32>, %mask: tensor<1x1x1x4xf32>) -> tensor<1x2x4x8xf32> {
  %s = graph.matmul %q, %k {onnx_node = "scores"} : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x4x4xf32>
  %c = graph.constant dense<2.000000e+00> : tensor<f32>
  %d = graph.div %s, %c {onnx_node = "scale"} : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %m = graph.add %d, %mask {onnx_node = "mask"} : (tensor<1x2x4x4xf32>, tensor<1x1x1x4xf32>) -> tensor<1x2x4x4xf32>
  %p = graph.softmax %m {axis = 3 : i64, onnx_node = "softmax"} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = graph.matmul %p, %v {onnx_node = "context"} : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  func.return %o : tensor<1x2x4x8xf32>
}

// CHECK-LABEL: func.func @masked_attention
// CHECK-SAME:  (%[[Q:.+]]: tensor<1x2x4x8xf32>, %[[K:.+]]: tensor<1x2x8x4xf32>, %[[V:.+]]: tensor<1x2x4x8xf32>, %[[MASK:.+]]: tensor<1x1x1x4xf32>)
// CHECK:       %[[P:.+]] = mrvl.matmul %[[Q]], %[[K]], %[[MASK]] {onnx_nodes = ["scores", "scale", "mask", "softmax"], layer_name = "{{.+}}", softmax_scale = 5.000000e-01 : f32}
// CHECK-NEXT:  %[[O:.+]] = mrvl.matmul %[[P]], %[[V]] {onnx_nodes = ["context"]
// CHECK-NEXT:  func.return %[[O]]

// -----

func.func @not_lowered(%x: tensor<1x5x8xf32>) -> (tensor<1x2x8xf32>, tensor<2x8xf32>) {
  %i = graph.constant dense<[0, 2]> : tensor<2xi64>
  %g = graph.onnx %x, %i {op_type = "Gather", domain = "", opset = 17 : i64, attrs = {axis = 1 : i64}, onnx_node = "Gather"} : (tensor<1x5x8xf32>, tensor<2xi64>) -> tensor<1x2x8xf32>
  %a = graph.constant dense<1.000000e+00> : tensor<1x8xf32>
  %b = graph.constant dense<2.000000e+00> : tensor<1x8xf32>
  %cat = graph.concat %a, %b {axis = 0 : i64, onnx_node = "Concat"} : (tensor<1x8xf32>, tensor<1x8xf32>) -> tensor<2x8xf32>
  func.return %g, %cat : tensor<1x2x8xf32>, tensor<2x8xf32>
}

// CHECK-LABEL: func.func @not_lowered
// CHECK:       graph.onnx %{{.+}} {op_type = "Gather"{{.*}}mrvl.cpu_reason = "Gather indices are not constant consecutive in-range integers"
// CHECK:       graph.concat {{.*}}mrvl.cpu_reason = "concat of constants only (fold constants first)"
