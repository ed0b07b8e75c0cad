import keras
import pytest

from keras_attention_vision.api_export import PACKAGE, kav_export


def test_registers_for_saving_under_package_name():
    @kav_export("keras_attention_vision.layers.Probe")
    class Probe(keras.layers.Layer):
        pass

    name = keras.saving.get_registered_name(Probe)
    assert name == f"{PACKAGE}>Probe"
    assert keras.saving.get_registered_object(name) is Probe
    assert Probe._kav_export_path == ("keras_attention_vision.layers.Probe",)


@pytest.mark.parametrize("path", ["", (), ("a", 3)])
def test_bad_path_is_quoted(path):
    with pytest.raises(ValueError, match="Received: path="):
        kav_export(path)
