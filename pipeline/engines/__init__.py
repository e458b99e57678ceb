"""Speech and language engines behind small streaming protocols (see `base`).

- speech to text: `whisper` (faster-whisper; model assembled by `assemble`); streaming policy in
  `pipeline.stt_stream`;
- language models: `gemini` (google-genai), `openai_compat` (Ollama, vLLM, llama.cpp),
  `offline` (the embedded template companion);
- text to speech: `piper` (English), `espeak` (Korean and the rest), `xtts` (GPU);
- `registry`: settings names -> factories, `load_engines`; `threads`: the engines' executors.
"""
