"""keras-attention-vision: visual-attention layers and the models of their papers.

Importing the package registers every public class with Keras, so
`keras.saving.load_model("model.keras")` finds them with no `custom_objects`.
It loads keras and the layers and models, nothing heavier: TensorFlow
Probability, matplotlib and the data sets load on first use.

Example:

```python
import keras_attention_vision as kav

block = kav.layers.NonLocalBlock()
```
"""

from keras_attention_vision import applications, layers, metrics, reinforce
from keras_attention_vision.version import __version__

__all__ = ["__version__", "applications", "layers", "metrics", "reinforce"]
