// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' -t 'mlip-bin{path="%t.bin"}' | filecheck %s
// RUN: python -c "from mrvl.mlip_binary import ModelBinary as M; b = M.read('%t.bin'); print(b.name, b.tile_end, len(b.layers), b.inputs[0].shape, b.outputs[0].shape)" | filecheck %s --check-prefix=READ
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' -t mlip-bin | filecheck %s --check-prefix=HEX
// RUN: not mrvl-opt %s -t 'mlip-bin{bogus=1}' 2>&1 | filecheck %s --check-prefix=OPTION
// RUN: not mrvl-opt %s -p 'mrvl-quantize,convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule,mlip-dma-schedule' 2>&1 | filecheck %s --check-prefix=TWICE
// RUN: not mrvl-opt %s -p 'mrvl-quantize,convert-mrvl-to-mlip,mlip-dma-schedule' -t mlip-bin 2>&1 | filecheck %s --check-prefix=UNALLOCATED
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' -t mlip-bin > %t.hex
// RUN: mrvl-opt %s -p 'mrvl-quantize,mrvl-tile-split{num_tiles=2},convert-mrvl-to-mlip,mlip-ocm-alloc,mlip-dma-schedule' | mrvl-opt -t mlip-bin | diff %t.hex -

// The whole mlip pipeline from an accelerator function to a model binary (bytes to a file,
// or hex on stdout); the printed scheduled IR, parsed back, gives the same binary.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x4x4x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %y = mrvl.conv2d %x, %w {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  func.return %y : tensor<1x4x4x3xf32>
}

// CHECK:  .bin: {{[0-9]+}} bytes, model tvmgen_mrvl_main_0
// READ:   tvmgen_mrvl_main_0 1 1 (1, 4, 4, 2) (1, 4, 4, 3)
// HEX:    {{^}}4d52564c01000400
// OPTION: mrvl-opt: error: mlip-bin: invalid option: Provided arguments ["bogus"] not found
// OPTION-NOT: Traceback
// TWICE:  mrvl-opt: error: @tvmgen_mrvl_main_0: mlip-dma-schedule already ran on this model
// UNALLOCATED: mrvl-opt: error: @tvmgen_mrvl_main_0: run mlip-ocm-alloc and mlip-dma-schedule first
