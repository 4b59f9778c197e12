// RUN: mrvl-opt %s -p graph-remove-identity --split-input-file | filecheck %s

// Identity and inference-mode dropout disappear; their users read the input directly.

func.func @identity_dropout(%x: tensor<1x4xf32>) -> (tensor<1x4xf32>, tensor<1x4xf32>) {
  %a = graph.identity %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  %b = graph.dropout %a {ratio = 0.5 : f32} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  %c = graph.relu %b : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %c, %a : tensor<1x4xf32>, tensor<1x4xf32>
}

// CHECK-LABEL: func.func @identity_dropout
// CHECK-SAME:  (%[[X:.+]]: tensor<1x4xf32>)
// CHECK-NEXT:    %[[R:.+]] = graph.relu %[[X]] : (tensor<1x4xf32>) -> tensor<1x4xf32>
// CHECK-NEXT:    func.return %[[R]], %[[X]] : tensor<1x4xf32>, tensor<1x4xf32>

// -----

// Not lowered: a training-mode Dropout (mask output used) is a graph.onnx op and stays.

func.func @training_dropout(%x: tensor<1x4xf32>) -> (tensor<1x4xf32>, tensor<1x4xi1>) {
  %y, %mask = graph.onnx %x {op_type = "Dropout", domain = "", opset = 17 : i64, attrs = {seed = 1 : i64}} : (tensor<1x4xf32>) -> (tensor<1x4xf32>, tensor<1x4xi1>)
  func.return %y, %mask : tensor<1x4xf32>, tensor<1x4xi1>
}

// CHECK-LABEL: func.func @training_dropout
// CHECK-NEXT:    %{{.+}}, %{{.+}} = graph.onnx %{{.+}} {op_type = "Dropout"
// CHECK-NEXT:    func.return
