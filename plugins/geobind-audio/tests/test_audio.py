"""geobind-audio: decoding, fixed-length clips, the HTS-AT encoder and its weights."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import geobind
from geobind_audio import AudioConfig, paper_config
from geobind_audio.audio import AudioPreprocess, BandEnergies, fix_length, resample

# HTS-AT calls torch.meshgrid without `indexing`; laion_clap's code, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

CFG = AudioConfig()
L = CFG.clip_samples  # 80000: 5 s at 16 kHz


def encode(wave: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """``wave`` ([frames] or [frames, channels]) as an encoded audio file."""
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A sine per channel plus a little noise, float32 ``[frames, channels]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    waves = [0.4 * np.sin(2 * np.pi * (220 + 110 * c + 40 * seed) * t) for c in range(channels)]
    return (np.stack(waves, 1) + 0.05 * rng.standard_normal((t.size, channels))).astype("f4")


def ramp(frames: int) -> np.ndarray:
    """Distinct float32 values, so a crop's position can be read off its first sample."""
    return np.linspace(-0.9, 0.9, frames, dtype=np.float32)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return geobind.build_encoder("audio")


@pytest.fixture(scope="module")
def clips():
    """44.1 kHz stereo WAV and FLAC of 7 s, and a 1.5 s clip, shorter than a 5 s clip."""
    return [
        encode(tone(7.0, seed=1), 44100, "WAV"),
        encode(tone(7.0, seed=2), 44100, "FLAC"),
        encode(tone(1.5, seed=3), 44100, "WAV"),
    ]


def test_registered_by_this_distribution():
    registry = geobind.get_registry()
    modality = registry.modality("audio")
    assert registry.owner("audio").distribution == "geobind-audio"
    assert (modality.storage, modality.column, modality.config) == ("binary", "audio", AudioConfig)


def test_import_is_light():
    code = (
        "import sys, geobind_audio; "
        "print('torch' in sys.modules, 'laion_clap' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


def test_embeds_real_encoded_audio_as_unit_vectors(encoder, clips):
    z = encoder.embed(clips)
    assert z.shape == (3, CFG.embed_dim)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(z[0], z[1])


def test_laion_clap_does_not_stay_on_sys_path(encoder):
    assert not [p for p in sys.path if p.rstrip("/\\").endswith("laion_clap")]


def test_training_step_reaches_the_swin_but_not_the_unused_tagging_head(encoder, clips):
    batch = encoder.collate(clips, train=True)
    assert batch.shape == (3, L) and batch.dtype == torch.float32
    encoder.train()
    encoder.zero_grad()
    encoder(batch).sum().backward()
    net = encoder.net
    assert net.audio_branch.patch_embed.proj.weight.grad.abs().sum() > 0
    assert net.audio_projection[0].weight.grad is not None
    assert all(p.grad is None for p in net.audio_branch.head.parameters())
    encoder.eval()


def test_preprocess_outputs_a_fixed_length_mono_clip(clips):
    for train in (False, True):
        prep = AudioPreprocess(16000, 5.0, train)
        for data in clips:
            out = prep(data)
            assert out.shape == (L,) and out.dtype == torch.float32


def test_resampled_length_is_rate_ratio_rounded():
    for n, rate in [
        (44100, 44100),
        (44101, 44100),
        (12345, 44100),
        (48000, 48000),
        (7, 44100),
        (22050, 22050),
    ]:
        assert resample(np.zeros(n, "f4"), rate, 16000).shape[0] == round(n * 16000 / rate)
    with pytest.raises(geobind.InputError, match="too short"):
        resample(np.zeros(1, "f4"), 44100, 16000)


def test_short_clip_is_repeat_padded_with_whole_copies_then_zeros():
    clip = ramp(16000 * 3 // 2)  # 1.5 s at the target rate: three whole copies fit in 5 s
    out = AudioPreprocess(16000, 5.0, False)(encode(clip, 16000, "WAV", "FLOAT")).numpy()
    n = clip.size
    for k in range(3):
        np.testing.assert_array_equal(out[k * n : (k + 1) * n], clip)
    assert not out[3 * n :].any()


def test_short_clip_repeats_after_resampling():
    out = AudioPreprocess(16000, 5.0, False)(encode(tone(1.5), 44100)).numpy()
    m = round(1.5 * 44100 * 16000 / 44100)
    np.testing.assert_array_equal(out[:m], out[m : 2 * m])
    assert out[:m].any() and not out[3 * m :].any()


def test_long_clip_is_centre_cropped_for_eval_and_randomly_for_training():
    full = ramp(16000 * 12)
    data = encode(full, 16000, "WAV", "FLOAT")
    out = AudioPreprocess(16000, 5.0, False)(data).numpy()
    start = (full.size - L) // 2
    np.testing.assert_array_equal(out, full[start : start + L])
    starts = set()
    for seed in range(4):
        torch.manual_seed(seed)
        crop = AudioPreprocess(16000, 5.0, True)(data).numpy()
        start = int(np.argmin(np.abs(full - crop[0])))
        np.testing.assert_array_equal(crop, full[start : start + L])
        starts.add(start)
    assert len(starts) > 1


def test_long_file_decodes_only_the_centre_window_it_needs():
    t = np.arange(44100 * 12) / 44100
    wave = (0.4 * np.sin(2 * np.pi * 50 * t)).astype("f4")
    out = AudioPreprocess(16000, 5.0, False)(encode(wave, 44100, "FLAC")).numpy()
    whole = fix_length(resample(wave, 44100, 16000), L)  # the centre of the whole file
    inner = slice(200, L - 200)  # the resampler's edges differ
    error = min(np.abs(np.roll(out, shift)[inner] - whole[inner]).max() for shift in (-1, 0, 1))
    assert error < 5e-3  # the same window, to within a sample


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])  # read by `wave`, by libsndfile
def test_a_long_recording_is_embedded_as_clips_spread_over_all_of_it(subtype):
    full = ramp(16000 * 12)  # 12 s: three 5 s clips cover it, from its start to its end
    data = encode(full, 16000, "WAV", subtype)
    heard = sf.read(io.BytesIO(data), dtype="float32")[0]  # as stored: PCM_16 rounds
    views = AudioPreprocess(16000, 5.0, False, windows=12)(data)
    assert isinstance(views, geobind.Views)
    starts = [0, (full.size - L) // 2, full.size - L]
    assert len(views) == 3
    for view, start in zip(views, starts):
        np.testing.assert_array_equal(view.numpy(), heard[start : start + L])
    two = AudioPreprocess(16000, 5.0, False, windows=2)(data)  # at most two: both ends
    assert [float(v[0]) for v in two] == [heard[0], heard[full.size - L]]
    middle = AudioPreprocess(16000, 5.0, False, windows=1)(data)  # the middle clip, as before
    np.testing.assert_array_equal(middle.numpy(), heard[starts[1] : starts[1] + L])
    short = AudioPreprocess(16000, 5.0, False, windows=12)(encode(ramp(L), 16000, "WAV"))
    assert isinstance(short, torch.Tensor) and short.shape == (L,)  # one clip: no views
    crop = AudioPreprocess(16000, 5.0, True, windows=12)(data)  # training: one random clip
    assert isinstance(crop, torch.Tensor) and crop.shape == (L,)
    with pytest.raises(ValueError, match="windows"):
        AudioPreprocess(16000, 5.0, False, windows=0)


def test_a_long_recording_embeds_as_the_mean_of_its_clips_and_reads_only_them(encoder, monkeypatch):
    import wave

    clips = [tone(5.0, 16000, 1, seed=s)[:, 0] for s in range(3)]
    hour = np.zeros(16000 * 3600, dtype="f4")  # an hour, silent but where the clips lie
    spots = [0, (hour.size - L) // 2, hour.size - L]
    for clip, spot in zip(clips, spots):
        hour[spot : spot + L] = clip
    long = encode(hour, 16000, "WAV")
    asked = []
    real = wave.Wave_read.readframes
    monkeypatch.setattr(wave.Wave_read, "readframes", lambda w, n: asked.append(n) or real(w, n))
    config = encoder.config.clip_windows
    try:
        encoder.config.clip_windows = 3
        got = encoder.embed([long])
    finally:
        encoder.config.clip_windows = config
    assert asked == [0, L, L, L]  # the header, then three clips' frames: not the hour
    alone = encoder.embed([encode(c, 16000, "WAV") for c in clips])
    expected = torch.nn.functional.normalize(alone.mean(0), dim=0)
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=0)
    assert min(float(got[0] @ a) for a in alone) < 0.999  # the mean, not one clip


def test_a_bad_stretch_inside_a_long_recording_is_named():
    full = tone(12.0, 16000, 1)[:, 0].copy()
    full[16000 * 9] = np.nan  # in the last clip only
    data = encode(full, 16000, "WAV", "FLOAT")
    with pytest.raises(geobind.InputError, match=r"NaN or infinite .*at 7.0-12.0 s of 12.0 s"):
        AudioPreprocess(16000, 5.0, False, windows=12)(data)


def test_stereo_is_down_mixed_to_the_channel_mean():
    left, right = ramp(16000), np.full(16000, 0.25, "f4")
    data = encode(np.stack([left, right], 1), 16000, "WAV", "FLOAT")
    out = AudioPreprocess(16000, 1.0, False)(data).numpy()
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "empty file"),
        (b"this is not audio at all" * 20, "not a readable audio format"),
        (encode(np.zeros((0, 2), "f4"), 44100), "no samples"),
        (encode(np.array([0.1, np.nan, 0.2], "f4"), 16000, "WAV", "FLOAT"), "NaN or infinite"),
        (encode(tone(2.0, 16000, 1), 16000)[:300], r"128 frames \(8 ms at 16000 Hz\) is too short"),
        (encode(tone(0.05, 44100), 44100, "FLAC"), "at least 0.1 s is needed"),
        ("a string", "expected encoded bytes"),
    ],
    # named by the problem: a float WAV's PEAK chunk holds the time it was written, so an id of
    # its bytes would differ between the processes that collect the tests
    ids=["empty", "not-audio", "no-samples", "nan", "too-short", "under-0.1s", "a-string"],
)
def test_bad_input_raises_input_error_naming_the_problem(data, problem):
    check = geobind.get_registry().modality("audio").check
    with pytest.raises(geobind.InputError, match=problem):
        check(data)
    with pytest.raises(geobind.InputError, match=problem):
        AudioPreprocess(16000, 5.0, False)(data)


def test_check_accepts_good_audio(clips):
    for data in clips + [encode(tone(1.0), 44100, "OGG")]:
        geobind.get_registry().modality("audio").check(data)


def test_preprocess_pickles(clips):
    prep = AudioPreprocess(16000, 5.0, False)
    torch.testing.assert_close(pickle.loads(pickle.dumps(prep))(clips[0]), prep(clips[0]))


def laion_checkpoint(net: torch.nn.Module, path, drop: str = "", extra: str = "") -> None:
    """Save ``net``'s weights as laion_clap does: DDP-prefixed, with a text branch."""
    state = {f"module.{k}": v for k, v in net.state_dict().items() if k != drop}
    state["module.text_branch.embeddings.word_embeddings.weight"] = torch.zeros(4, 3)
    state["module.text_projection.0.weight"] = torch.zeros(3, 3)
    state["module.logit_scale_a"] = torch.zeros(())
    if extra:
        state[f"module.{extra}"] = torch.zeros(1)
    torch.save({"state_dict": state, "epoch": 3}, path)


def test_laion_clap_checkpoint_loads_and_embeds_identically(encoder, clips, tmp_path):
    path = tmp_path / "clap.pt"
    laion_checkpoint(encoder.net, path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = geobind.build_encoder("audio", weights=path)
    torch.testing.assert_close(loaded.embed(clips), encoder.embed(clips), rtol=0, atol=0)


def test_plain_state_dict_loads(encoder, clips, tmp_path):
    path = tmp_path / "audio.safetensors"
    geobind.save_state_dict(path, encoder.net.state_dict())
    loaded = geobind.build_encoder("audio", weights=path)
    torch.testing.assert_close(loaded.embed(clips[:1]), encoder.embed(clips[:1]))


def test_mismatching_checkpoint_names_the_keys(encoder, tmp_path):
    path = tmp_path / "bad.pt"
    laion_checkpoint(
        encoder.net,
        path,
        drop="audio_projection.2.weight",
        extra="audio_branch.fusion_model.weight",
    )
    with pytest.raises(geobind.WeightsError, match="audio_projection.2.weight") as err:
        geobind.build_encoder("audio", weights=path)
    assert "audio_branch.fusion_model.weight" in str(err.value)
    assert "text_branch" not in str(err.value)


def test_checkpoint_of_another_size_names_the_shapes(encoder, tmp_path):
    path = tmp_path / "wide.pt"
    laion_checkpoint(encoder.net, path)
    with pytest.raises(geobind.WeightsError, match="of another shape"):
        geobind.build_encoder("audio", {"embed_dim": 32}, weights=path)


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"n_mels": 48}, "multiple of n_mels"),
        ({"clip_seconds": 10.0}, "frames at hop"),
        ({"swin_window": 5}, "swin_window"),
        ({"fmax": 9000.0}, "fmax"),
        ({"clip_windows": 0}, "clip_windows must be a whole number of clips, 1 or more, got 0"),
    ],
)
def test_impossible_geometry_is_a_config_error(overrides, problem):
    with pytest.raises(geobind.ConfigError, match=problem):
        geobind.build_encoder("audio", overrides)


@pytest.mark.slow
def test_paper_size_htsat_tiny_builds_runs_and_matches_laion_clap_layout():
    from laion_clap.clap_module.htsat import create_htsat_model

    from geobind_audio.model import audio_cfg

    config = paper_config()
    encoder = geobind.build_encoder("audio", config)
    with torch.no_grad():
        z = encoder(torch.randn(2, config.clip_samples) * 0.1)
    assert z.shape == (2, 512) and config.clip_samples == 480000
    laion_cfg = audio_cfg(config)
    laion_cfg.model_name = "tiny"  # laion_clap's own HTSAT-tiny, to compare layouts with
    reference = create_htsat_model(laion_cfg)
    ours = {k: v.shape for k, v in encoder.net.audio_branch.state_dict().items()}
    assert ours == {k: v.shape for k, v in reference.state_dict().items()}
    assert encoder.net.audio_projection[0].weight.shape == (512, 768)  # CLAP's 768 -> 512


def test_builds_without_laion_clap_training_stack_or_the_hub():
    """Building the encoder loads laion_clap's HTS-AT alone: not laion_clap's package
    ``__init__``, whose transformers import reaches the Hugging Face Hub when online (and hangs
    without a network), nor its folder on ``sys.path``; a later ``import laion_clap`` still
    works."""
    import os
    import subprocess
    import sys

    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    code = (
        "import sys, warnings, geobind\n"
        "geobind.build_encoder('audio')\n"
        "print('loaded', sorted(m for m in ('transformers', 'laion_clap', 'laion_clap.hook',"
        " 'clap_module') if m in sys.modules))\n"
        "print('path', [p for p in sys.path if 'laion_clap' in p])\n"
        "warnings.simplefilter('ignore')\n"
        "import os\n"  # laion_clap's own __init__ needs the hub kept away
        "os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "import laion_clap\n"
        "print('later', laion_clap.CLAP_Module.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["loaded []", "path []", "later CLAP_Module"]
    assert "huggingface.co" not in result.stderr


def test_band_energies_put_a_tone_in_its_band_at_any_sample_rate():
    features = BandEnergies(bands=32, sample_rate=16000)
    edges = np.geomspace(features.fmin, 8000, 33)
    for freq, rate in ((1000.0, 16000), (4000.0, 44100)):
        t = np.arange(int(2.0 * rate)) / rate
        wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        out = features.fit([]).transform([encode(wave, rate)])
        assert out.shape == (1, 64)  # mean and spread over time of 32 bands
        loudest = int(out[0, :32].argmax())
        assert edges[loudest] <= freq < edges[loudest + 1]
        assert out[0, 32:].max() < 1.0  # a steady tone hardly varies over time


@pytest.mark.parametrize("n_fft, hop", [(1024, 640), (512, 320), (1024, 480)])
def test_fft_stft_equals_torchlibrosa_convolution_stft(n_fft, hop):
    from torchlibrosa.stft import STFT

    from geobind_audio.model import FFTSTFT

    reference = STFT(n_fft=n_fft, hop_length=hop, freeze_parameters=True)
    fast = FFTSTFT(reference)
    torch.manual_seed(0)
    x = 0.3 * torch.randn(3, 16000)
    (real, imag), (fr, fi) = reference(x), fast(x)
    assert fast._is_dft and fr.shape == real.shape == (3, 1, 16000 // hop + 1, n_fft // 2 + 1)
    scale = real.abs().max().item()
    assert (fr - real).abs().max().item() < 1e-5 * scale * n_fft**0.5
    assert (fi - imag).abs().max().item() < 1e-5 * scale * n_fft**0.5


def test_fft_stft_runs_the_convolutions_when_loaded_kernels_are_not_a_dft():
    """A checkpoint whose STFT kernels were trained must embed with those kernels."""
    from torchlibrosa.stft import STFT

    from geobind_audio.model import FFTSTFT

    reference = STFT(n_fft=256, hop_length=128, freeze_parameters=True)
    fast = FFTSTFT(reference)
    x = 0.3 * torch.randn(2, 4000)
    fast(x)
    assert fast._is_dft
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in reference.state_dict().items()}
    fast.load_state_dict(state)  # the same modules: reference now holds the trained kernels
    real, imag = fast(x)
    assert not fast._is_dft
    expected_real, expected_imag = reference(x)
    assert torch.equal(real, expected_real) and torch.equal(imag, expected_imag)


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (22050, 3)])
def test_16_bit_wav_is_read_as_libsndfile_reads_it(monkeypatch, rate, channels):
    from geobind_audio import audio

    data = encode(tone(6.0, rate, channels, seed=channels), rate, "WAV", "PCM_16")
    samples, got_rate, whole = audio._pcm16(data)
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert got_rate == f.samplerate and whole
        assert np.array_equal(samples, f.read(dtype="float32", always_2d=True))
    for train in (False, True):  # the same clip, and the same random window, either way
        torch.manual_seed(5)
        fast = AudioPreprocess(16000, 5.0, train)(data)
        with monkeypatch.context() as m:
            m.setattr(audio, "_pcm16", lambda data, window=None: None)
            torch.manual_seed(5)
            slow = AudioPreprocess(16000, 5.0, train)(data)
        assert torch.equal(fast, slow)


def test_a_long_16_bit_wav_is_read_only_where_its_clip_lies(monkeypatch):
    import wave

    from geobind_audio import audio

    rng = np.random.default_rng(0)
    long = encode((rng.standard_normal((16000 * 60, 2)) * 0.1).astype("f4"), 16000, "WAV")
    asked = []
    real = wave.Wave_read.readframes
    monkeypatch.setattr(wave.Wave_read, "readframes", lambda w, n: asked.append(n) or real(w, n))
    for train in (False, True):
        torch.manual_seed(2)
        fast = AudioPreprocess(16000, 5.0, train)(long)
        with monkeypatch.context() as m:
            m.setattr(audio, "_pcm16", lambda data, window=None: None)
            torch.manual_seed(2)
            assert torch.equal(fast, AudioPreprocess(16000, 5.0, train)(long))
    assert asked == [L, L]  # one clip's frames, not the minute


@pytest.mark.parametrize("fmt, subtype", [("WAV", "FLOAT"), ("WAV", "PCM_24"), ("FLAC", None)])
def test_other_files_are_left_to_libsndfile(fmt, subtype):
    from geobind_audio import audio

    data = encode(tone(1.0, 16000, 1), 16000, fmt, subtype)
    assert audio._pcm16(data) is None
    assert audio._pcm16(data[:300]) is None  # a WAV cut short: libsndfile says how short
    assert AudioPreprocess(16000, 1.0, False)(data).shape == (16000,)


def test_band_stats_feed_each_mel_bands_mean_spread_and_peak_to_the_projection(clips):
    torch.manual_seed(0)
    encoder = geobind.build_encoder("audio", {"band_stats": True})
    net = encoder.net.eval()
    batch = encoder.collate(clips, train=True)  # one clip of each: the 7 s ones cropped
    seen = []
    handle = net.audio_branch.bn0.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        out = net(batch)
        swin = net.audio_branch({"waveform": batch})["embedding"]
    handle.remove()
    bands = seen[0][..., 0]  # [batch, mels, frames]
    assert bands.shape[:2] == (3, CFG.n_mels)
    stats = torch.cat([bands.mean(-1), bands.std(-1), bands.amax(-1)], dim=1)
    expected = net.audio_projection(torch.cat([swin, stats], dim=1))
    torch.testing.assert_close(out, expected)
    # the statistics carry weight: the same Swin vector with flattened bands maps elsewhere
    flat = torch.cat([swin, torch.zeros_like(stats)], dim=1)
    assert not torch.allclose(out, net.audio_projection(flat))


def test_weights_without_band_stats_do_not_load_into_an_encoder_with_them(encoder, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(encoder.net.state_dict(), path)
    with pytest.raises(geobind.WeightsError, match="audio_projection.0.weight"):
        geobind.build_encoder("audio", {"band_stats": True}, weights=path)
