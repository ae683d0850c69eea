"""Reading the HDC2021 data: folder layouts, image formats, camera physics, the PSF."""
