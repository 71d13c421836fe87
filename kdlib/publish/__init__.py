"""Publishing: the offline chart renderer and the Jupyter Book build."""
