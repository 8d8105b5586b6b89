"""One module per GAN variant; each registers itself with `@register`."""
