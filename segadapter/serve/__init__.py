"""`segadapter serve`: a web demo of a model (Gradio; `pip install 'segadapter[demo]'`).

`uploads` and `legend` need no Gradio (they are tested alone); `app` builds the page.
"""
