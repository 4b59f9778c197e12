"""mrvl's Python API: the user-facing entry points, re-exported from their modules.

```python
from mrvl.frontend.api import import_onnx
module = import_onnx("model.onnx", input_shapes={"x": [1, 3, 224, 224]})
```
"""

from mrvl.frontend.onnx_import import import_onnx

__all__ = ["import_onnx"]
