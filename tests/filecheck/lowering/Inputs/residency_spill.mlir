func.func @tvmgen_mrvl_main_0(%x: tensor<1x64x64x16xf32>) -> tensor<1x64x64x16xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<2.500000e-01> : tensor<16x1x1x16xf32>
  %a = mrvl.conv2d %x, %w {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x64x64x16xf32>, tensor<16x1x1x16xf32>) -> tensor<1x64x64x16xf32>
  %y = mrvl.maxpool2d %a {kernel_shape = array<i64: 1, 1>, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x64x64x16xf32>) -> tensor<1x64x64x16xf32>
  func.return %y : tensor<1x64x64x16xf32>
}
