"""The consumer's side: claim links, pools, and the page that shows a claimed code."""
