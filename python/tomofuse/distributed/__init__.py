"""Out-of-core and distributed runs of the pipeline's stages (Dask).

``fbp_to_zarr`` reconstructs a projection stack slab by slab over detector rows,
in this process or on a ``dask.distributed`` cluster, into a Zarr volume.
Needs the ``dask`` extra (``pip install 'tomofuse[dask]'``) for clusters and Zarr.
"""

from ._fbp import fbp_to_zarr

__all__ = ["fbp_to_zarr"]
