try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C during the first imports: one line, as anywhere else
    import sys

    print("dnnbench: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
