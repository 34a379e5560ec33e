"""delever: simulate and measure deleveraging cascades in crypto derivatives.

A price move pushes leveraged accounts below maintenance margin; their forced orders eat into finite
order-book depth; the price falls further; losses beyond bankruptcy hit the insurance fund and, when
it cannot absorb them, auto-deleveraging (ADL) closes the profitable side.
"""

__version__ = "0.1.0"
