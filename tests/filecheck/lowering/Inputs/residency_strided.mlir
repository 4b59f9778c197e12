func.func @tvmgen_mrvl_main_0(%x: tensor<1x8x8x8xf32>) -> tensor<1x4x4x8xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<2.500000e-01> : tensor<8x1x1x8xf32>
  %v = graph.constant dense<1.250000e-01> : tensor<8x1x1x8xf32>
  %a = mrvl.conv2d %x, %w {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x8x8x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x8x8x8xf32>
  %y = mrvl.conv2d %a, %v {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 2, 2>} : (tensor<1x8x8x8xf32>, tensor<8x1x1x8xf32>) -> tensor<1x4x4x8xf32>
  func.return %y : tensor<1x4x4x8xf32>
}
