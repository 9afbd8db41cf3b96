"""attnlens: explain what Transformer and Mamba models look at."""
