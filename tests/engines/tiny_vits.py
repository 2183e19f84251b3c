"""A tiny Coqui VITS with random weights, saved as an operator's local model is: model.pth + config.json.

No pip package ships a Coqui model and this machine cannot reach a model hub, so the Coqui engine's loading
and synthesis code runs on this: a real VITS (text encoder, flow, HiFi-GAN decoder) of ~250k parameters that
speaks noise. Characters, not phonemes, so no espeak is needed. Needs coqui-tts (and torch) installed.
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLE_RATE = 16_000  # not VITS's default 22.05 kHz, so a test can tell the config's rate was honoured
HOP_LENGTH = 256  # samples per spectrogram frame = product of the decoder's upsample rates


def build_tiny_vits(
    directory: Path,
    *,
    speakers: list[str] | None = None,
    languages: list[str] | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write `directory`/model.pth and config.json; return (checkpoint, config) paths.

    `speakers` makes it a multi-speaker model (speaker embeddings), `languages` a multilingual one (language
    embeddings), each with its ids file beside the checkpoint, as Coqui's own multi-speaker VITS models have.
    """
    import torch
    from trainer.io import save_model  # coqui-tts-trainer
    from TTS.tts.configs.shared_configs import BaseAudioConfig, CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    directory.mkdir(parents=True, exist_ok=True)
    speakers_file = languages_file = None
    if speakers:
        speakers_file = directory / "speaker_ids.json"
        speakers_file.write_text(json.dumps({name: index for index, name in enumerate(speakers)}))
    if languages:
        languages_file = directory / "language_ids.json"
        languages_file.write_text(json.dumps({name: index for index, name in enumerate(languages)}))

    audio = BaseAudioConfig(
        sample_rate=SAMPLE_RATE,
        fft_size=512,
        win_length=512,
        hop_length=HOP_LENGTH,
        num_mels=40,
        # Coqui would cut "silence" off the end; random weights speak quietly, so it could cut everything.
        do_trim_silence=False,
    )
    args = VitsArgs(
        out_channels=audio.fft_size // 2 + 1,
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        kernel_size_posterior_encoder=3,
        num_layers_posterior_encoder=1,
        kernel_size_flow=3,
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=[8, 8, 4],  # 8 * 8 * 4 = HOP_LENGTH
        upsample_kernel_sizes_decoder=[16, 16, 8],
        upsample_initial_channel_decoder=32,
        use_sdp=False,  # the deterministic duration predictor: length follows the text, not noise
        init_discriminator=False,  # training only
        use_speaker_embedding=bool(speakers),
        speakers_file=str(speakers_file) if speakers_file else None,
        speaker_embedding_channels=8,
        use_language_embedding=bool(languages),
        language_ids_file=str(languages_file) if languages_file else None,
        embedded_language_dim=4,
    )
    config = VitsConfig(
        model_args=args,
        audio=audio,
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations="!'(),-.:;? ",
            pad="<PAD>",
            phonemes=None,
        ),
        phoneme_language=None if languages else "en",
    )
    torch.manual_seed(seed)
    model = Vits(config)
    checkpoint, config_path = directory / "model.pth", directory / "config.json"
    # The trainer's own checkpoint writer: {"config", "model" (state dict), "step", "epoch", ...}.
    save_model(config, model, checkpoint, current_step=0, epoch=0)
    config.save_json(str(config_path))
    return checkpoint, config_path
