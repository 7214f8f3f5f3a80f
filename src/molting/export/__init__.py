"""Export: a merged model, a GGUF through llama.cpp's converter, an Ollama Modelfile, and the check that
the exported model answers as the adapter does (`molt export`)."""
