"""Video through PyAV (the `video` extra): decode, upscale every frame, encode, copy the rest."""

from srexport.video.frames import upscale_frames
from srexport.video.job import VideoInterrupted, VideoResult, upscale_video
from srexport.video.options import FrameRange, VideoError, VideoOptions, is_video
from srexport.video.seeds import frame_seed

__all__ = ["FrameRange", "VideoError", "VideoInterrupted", "VideoOptions", "VideoResult", "frame_seed",
           "is_video", "upscale_frames", "upscale_video"]
